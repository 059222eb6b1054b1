"""The HTTP bridge: a plain WSGI application over an :class:`~router.AIProviderManager`.

    from router import AIProviderManager
    from router.bridge import create_app

    manager = AIProviderManager("conf/ai_providers.yaml").start()
    app = create_app(manager)          # mount in cheroot, gunicorn --threads, any framework

One room per door, each a pair of pure translations (a body to an ``AIRequest`` and options;
an answer, chunks or an error to the door's body or events) and the handlers that run them:

- ``ai.py``: the router's own ``/ai/*`` endpoints,
- ``openai_chat.py``: OpenAI chat completions and ``/v1/models``.

Around them: ``app.py`` (routing, auth, limits, errors), ``wire.py`` (request, response,
secrets), ``errors.py`` (status codes, body errors), ``options.py`` (strategy, selection,
timeout), ``streaming.py`` (an SSE body that never ends silently) and ``metrics.py``
(Prometheus). ``router.server`` runs the app on cheroot. See ``docs/bridge.md``.

The app is thread-safe (the manager is); every request is answered by the thread the WSGI
server calls it on, and an SSE response occupies that thread until the stream ends. Errors
are JSON with a fitting status, never a stack trace, and never contain an API key.
"""

from router.bridge.app import BridgeApp, create_app
from router.bridge.errors import status_for

__all__ = ["BridgeApp", "create_app", "status_for"]
