"""MCP tool translation: every real tool in tests/fixtures/mcp_tools, for every provider.

Gemini output is checked against the v1beta discovery spec's ``Schema`` component (the allowed
field set and type names are read from the spec file, not written down here) and, as a second
opinion, against google-genai's ``FunctionDeclaration`` model.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from router.errors import ToolTranslationError
from router.models import MCPTool, ProviderType
from router.tools import (
    GEMINI_SCHEMA_FIELDS,
    check_tool,
    gemini_schema,
    to_anthropic_tool,
    to_gemini_declaration,
    to_openai_tool,
    translate_tools,
)

FIXTURES = Path(__file__).parent / "fixtures"
TOOL_FILES = sorted((FIXTURES / "mcp_tools").glob("*.json"))
SPEC = json.loads(
    (
        FIXTURES / "wire" / "specs" / "generativelanguage-v1beta.discovery-openapi3_0.json"
    ).read_text()
)
SCHEMA_SPEC = SPEC["components"]["schemas"]["Schema"]
ALLOWED_FIELDS = frozenset(SCHEMA_SPEC["properties"])
GEMINI_TYPES = frozenset(SPEC["components"]["schemas"]["Type"]["enum"]) - {"TYPE_UNSPECIFIED"}
# Formats Gemini has accepted per type; others were rejected ("only 'enum' and 'date-time' are
# supported for STRING type").
GEMINI_FORMATS = {
    "STRING": {"enum", "date-time"},
    "NUMBER": {"float", "double"},
    "INTEGER": {"int32", "int64"},
}
OPENAI_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
ANTHROPIC_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
GEMINI_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
ROOT_COMBINATORS = ("anyOf", "oneOf", "allOf", "not", "enum", "const")

ALL_PROVIDERS = (
    ProviderType.OPENAI,
    ProviderType.OPENAI_COMPATIBLE,
    ProviderType.ANTHROPIC,
    ProviderType.GOOGLE,
)
# Every real tool in the fixture set can be expressed for every provider (root-level rule-only
# combinators such as add_issue_comment's anyOf-of-required are dropped, not refused). The
# refusal paths are covered by the synthetic tests further down.
EXPECTED_REFUSED: dict[ProviderType, set[str]] = {provider: set() for provider in ALL_PROVIDERS}


def load_tool(stem: str) -> MCPTool:
    return MCPTool.model_validate(json.loads((FIXTURES / "mcp_tools" / f"{stem}.json").read_text()))


def tool(schema: dict[str, Any], name: str = "t", description: str = "d") -> MCPTool:
    return MCPTool(name=name, description=description, inputSchema=schema)


def params(schema: dict[str, Any]) -> dict[str, Any]:
    """The Gemini parameters for a tool with ``schema`` (which must be expressible)."""
    return to_gemini_declaration(tool(schema))["parameters"]


def assert_gemini_schema(node: Any, path: str = "parameters") -> None:
    """``node`` uses only Schema fields, recursively, and is internally consistent."""
    assert isinstance(node, dict), f"{path}: not an object"
    extra = set(node) - ALLOWED_FIELDS
    assert not extra, f"{path}: fields outside the Gemini Schema: {sorted(extra)}"
    if "type" in node:
        assert node["type"] in GEMINI_TYPES, f"{path}.type: {node['type']!r}"
    else:
        assert node.get("anyOf"), f"{path}: neither a type nor anyOf"
    kind = node.get("type")
    if "enum" in node:
        assert kind == "STRING", f"{path}: enum on {kind}"
        assert node["enum"] and all(isinstance(v, str) for v in node["enum"]), path
    if "format" in node:
        assert node["format"] in GEMINI_FORMATS.get(kind, set()), f"{path}.format"
    if "nullable" in node:
        assert isinstance(node["nullable"], bool), path
    for key in ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"):
        if key in node:
            assert isinstance(node[key], int) and node[key] >= 0, f"{path}.{key}"
    for key in ("minimum", "maximum"):
        if key in node:
            assert isinstance(node[key], int | float) and not isinstance(node[key], bool), path
    for key in ("description", "title", "pattern"):
        if key in node:
            assert isinstance(node[key], str), f"{path}.{key}"
    if kind == "ARRAY":
        assert "items" in node, f"{path}: ARRAY without items"
    if "items" in node:
        assert kind == "ARRAY", f"{path}: items on {kind}"
        assert_gemini_schema(node["items"], f"{path}.items")
    properties = node.get("properties", {})
    if "properties" in node:
        assert kind == "OBJECT" and isinstance(properties, dict) and properties, path
        for name, sub in properties.items():
            assert_gemini_schema(sub, f"{path}.properties[{name}]")
    for key in ("required", "propertyOrdering"):
        if key in node:
            names = node[key]
            assert names and set(names) <= set(properties), f"{path}.{key}: {names}"
            assert len(set(names)) == len(names), f"{path}.{key}: duplicates"
    for index, branch in enumerate(node.get("anyOf", [])):
        assert_gemini_schema(branch, f"{path}.anyOf[{index}]")


def no_refs(value: Any) -> bool:
    text = json.dumps(value)
    return '"$ref"' not in text and '"$defs"' not in text


def find(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for step in path:
        node = node[step]
    return node


# --- the spec-derived rules themselves -------------------------------------------------------


def test_allowed_fields_come_from_the_spec() -> None:
    assert ALLOWED_FIELDS == GEMINI_SCHEMA_FIELDS
    assert {"type", "properties", "items", "anyOf", "nullable", "enum"} <= ALLOWED_FIELDS
    assert not {"additionalProperties", "$ref", "oneOf", "allOf", "not", "const"} & ALLOWED_FIELDS
    assert {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"} <= GEMINI_TYPES


def test_the_fixture_set_is_all_there() -> None:
    assert len(TOOL_FILES) == 51


# --- every fixture, every provider -----------------------------------------------------------


@pytest.mark.parametrize("path", TOOL_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("provider", ALL_PROVIDERS, ids=lambda p: p.value)
def test_every_fixture_translates_or_is_refused_as_expected(
    path: Path, provider: ProviderType
) -> None:
    mcp_tool = MCPTool.model_validate(json.loads(path.read_text()))
    reason = check_tool(mcp_tool, provider)
    if mcp_tool.name in EXPECTED_REFUSED[provider]:
        assert reason
        with pytest.raises(ToolTranslationError, match=f"tool '{mcp_tool.name}': "):
            translate_tools([mcp_tool], provider)
        return
    assert reason is None, reason
    [translated] = translate_tools([mcp_tool], provider)
    source = mcp_tool.inputSchema
    if provider in (ProviderType.OPENAI, ProviderType.OPENAI_COMPATIBLE):
        assert translated["type"] == "function"
        function = translated["function"]
        assert set(function) == {"name", "description", "parameters"}
        assert OPENAI_NAME.fullmatch(function["name"])
        assert_json_schema_root(function["parameters"], source)
    elif provider is ProviderType.ANTHROPIC:
        assert set(translated) == {"name", "description", "input_schema"}
        assert ANTHROPIC_NAME.fullmatch(translated["name"])
        assert_json_schema_root(translated["input_schema"], source)
    else:
        assert GEMINI_NAME.fullmatch(translated["name"])
        assert translated["description"] == mcp_tool.description
        assert set(translated) <= {"name", "description", "parameters"}
        if source.get("properties"):
            parameters = translated["parameters"]
            assert parameters["type"] == "OBJECT"
            assert "anyOf" not in parameters
            assert_gemini_schema(parameters)
            assert no_refs(parameters)
            # The model still sees every parameter and which ones it must send.
            assert list(parameters["properties"]) == list(source["properties"])
            assert parameters.get("required", []) == [
                n for n in source.get("required", []) if n in source["properties"]
            ]
        else:
            assert "parameters" not in translated


def assert_json_schema_root(schema: dict[str, Any], source: dict[str, Any]) -> None:
    """One object at the top level; below it the source schema is passed through unchanged."""
    assert schema["type"] == "object"
    for keyword in ROOT_COMBINATORS:
        assert keyword not in schema, keyword
    for key, value in source.items():
        if key not in ("type", *ROOT_COMBINATORS):
            assert schema[key] == value, key


@pytest.mark.parametrize("path", TOOL_FILES, ids=lambda p: p.stem)
def test_every_gemini_declaration_validates_with_google_genai(path: Path) -> None:
    genai_types = pytest.importorskip("google.genai.types")
    mcp_tool = MCPTool.model_validate(json.loads(path.read_text()))
    declaration = to_gemini_declaration(mcp_tool)
    parsed = genai_types.FunctionDeclaration.model_validate(declaration)
    assert parsed.name == mcp_tool.name
    # Nothing was silently ignored on the way in.
    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json") == json.loads(
        json.dumps(declaration)
    )


def test_the_input_schema_is_never_modified() -> None:
    for path in TOOL_FILES:
        mcp_tool = MCPTool.model_validate(json.loads(path.read_text()))
        before = copy.deepcopy(mcp_tool.inputSchema)
        for provider in ALL_PROVIDERS:
            if check_tool(mcp_tool, provider) is None:
                translate_tools([mcp_tool], provider)
        gemini_schema(mcp_tool.inputSchema)
        assert mcp_tool.inputSchema == before, path.stem


# --- $ref / $defs ----------------------------------------------------------------------------


def test_defs_references_are_inlined_for_gemini() -> None:
    parameters = to_gemini_declaration(
        load_tool("dynamodb-mcp-server__compute_performances_and_costs")
    )["parameters"]
    table = find(parameters, "properties", "table_list", "items")
    assert table["type"] == "OBJECT"
    assert table["required"] == ["name", "item_size_bytes", "item_count"]
    gsi = find(table, "properties", "gsi_list")
    assert gsi["maxItems"] == 20
    assert find(gsi, "items", "properties", "name") == {
        "title": "Name",
        "type": "STRING",
        "minLength": 1,
    }
    assert no_refs(parameters)


def test_refs_with_sibling_keywords_keep_the_use_site_description() -> None:
    schema = {
        "type": "object",
        "$defs": {"Mode": {"type": "string", "enum": ["a", "b"], "description": "A mode."}},
        "properties": {"mode": {"$ref": "#/$defs/Mode", "description": "Which mode to run."}},
    }
    assert params(schema)["properties"]["mode"] == {
        "description": "Which mode to run.",
        "type": "STRING",
        "enum": ["a", "b"],
    }


def test_definitions_and_json_pointer_refs_are_inlined() -> None:
    schema = {
        "type": "object",
        "definitions": {"Id": {"type": "integer", "minimum": 1}},
        "properties": {
            "id": {"$ref": "#/definitions/Id"},
            "same": {"$ref": "#/properties/id"},
            "odd~/name": {"type": "boolean"},
            "escaped": {"$ref": "#/properties/odd~0~1name"},
        },
    }
    properties = params(schema)["properties"]
    assert properties["id"] == properties["same"] == {"type": "INTEGER", "minimum": 1}
    assert properties["escaped"] == {"type": "BOOLEAN"}


def test_json_pointer_refs_in_the_district_map() -> None:
    parameters = to_gemini_declaration(load_tool("mcp-server-chart__generate_district_map"))[
        "parameters"
    ]
    data = parameters["properties"]["data"]
    subdistrict = find(data, "properties", "subdistricts", "items")
    assert subdistrict["properties"]["name"] == data["properties"]["name"]
    assert subdistrict["properties"]["style"] == data["properties"]["style"]
    assert subdistrict["required"] == ["name"]


def test_openai_and_anthropic_keep_refs_and_defs() -> None:
    mcp_tool = load_tool("aws-pricing-mcp-server__get_pricing")
    assert to_openai_tool(mcp_tool)["function"]["parameters"] == mcp_tool.inputSchema
    assert to_anthropic_tool(mcp_tool)["input_schema"] == mcp_tool.inputSchema


@pytest.mark.parametrize("provider", ALL_PROVIDERS, ids=lambda p: p.value)
def test_a_reference_that_does_not_resolve_is_refused(provider: ProviderType) -> None:
    bad = tool({"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}})
    reason = check_tool(bad, provider)
    assert reason and "#/$defs/Missing" in reason
    remote = tool({"type": "object", "properties": {"x": {"$ref": "https://x.test/s.json"}}})
    assert "outside the schema" in (check_tool(remote, provider) or "")


# --- recursion -------------------------------------------------------------------------------


def test_recursive_defs_are_cut_after_one_expansion() -> None:
    parameters = to_gemini_declaration(
        load_tool("amazon-qindex-mcp-server__SearchRelevantContent")
    )["parameters"]
    attribute_filter = parameters["properties"]["attribute_filter"]
    assert attribute_filter["type"] == "OBJECT"
    assert attribute_filter["nullable"] is True
    # One full level of the filter is spelled out ...
    equals_to = attribute_filter["properties"]["equalsTo"]
    assert equals_to["required"] == ["name", "value"]
    assert "stringListValue" in equals_to["properties"]["value"]["properties"]
    # ... and the recursive members point back at it instead of repeating it.
    nested = attribute_filter["properties"]["andAllFilters"]
    assert nested["type"] == "ARRAY" and nested["nullable"] is True
    assert nested["items"]["type"] == "OBJECT"
    assert "properties" not in nested["items"]
    assert "same structure as 'AttributeFilter'" in nested["items"]["description"]
    negated = attribute_filter["properties"]["notFilter"]
    assert negated["type"] == "OBJECT" and "Recursive" in negated["description"]
    assert no_refs(parameters)


def test_the_mind_map_keeps_its_tree_shape() -> None:
    parameters = to_gemini_declaration(load_tool("mcp-server-chart__generate_mind_map"))[
        "parameters"
    ]
    level = parameters["properties"]["data"]
    depth = 0
    while "properties" in level:
        assert level["type"] == "OBJECT"
        assert level["required"] == ["name"]
        assert level["properties"]["name"] == {"type": "STRING"}
        level = level["properties"]["children"]["items"]
        depth += 1
    assert depth == 3  # data, its children, and one expansion of the recursive $ref
    assert level["type"] == "OBJECT"
    assert "#/properties/data/properties/children/items" in level["description"]


def test_a_root_that_refers_to_itself_terminates() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "child": {"$ref": "#"}},
    }
    parameters = params(schema)
    child = parameters["properties"]["child"]
    assert child["properties"]["name"] == {"type": "STRING"}
    assert "properties" not in child["properties"]["child"]
    assert_gemini_schema(parameters)


def test_mutually_recursive_definitions_terminate() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}, "n": {}}},
        },
        "properties": {"root": {"$ref": "#/$defs/A"}},
    }
    parameters = params(schema)
    assert_gemini_schema(parameters)
    b = find(parameters, "properties", "root", "properties", "b")
    assert "same structure as 'A'" in b["properties"]["a"]["description"]


# --- nullable, type arrays, combinators ------------------------------------------------------


def test_anyof_with_null_becomes_nullable() -> None:
    properties = to_gemini_declaration(load_tool("basic-memory__write_note"))["parameters"][
        "properties"
    ]
    assert properties["project"] == {"type": "STRING", "title": "Project", "nullable": True}


def test_type_array_with_null_becomes_nullable() -> None:
    parameters = to_gemini_declaration(load_tool("mcp-text-editor__edit_text_file_contents"))[
        "parameters"
    ]
    patch = find(parameters, "properties", "files", "items", "properties", "patches", "items")
    line_end = patch["properties"]["line_end"]
    assert line_end["type"] == "INTEGER" and line_end["nullable"] is True
    assert patch["required"] == ["contents"]


def test_a_branch_that_matches_nothing_is_dropped() -> None:
    properties = to_gemini_declaration(load_tool("mcp-server-chart__generate_histogram_chart"))[
        "parameters"
    ]["properties"]
    assert properties["binNumber"] == {
        "type": "NUMBER",
        "description": "Number of intervals to define the number of intervals in a histogram.",
        "nullable": True,
    }


def test_several_types_become_typed_alternatives() -> None:
    node = params(
        {
            "properties": {
                "v": {
                    "type": ["string", "integer", "null"],
                    "description": "A value.",
                    "minimum": 0,
                }
            }
        }
    )["properties"]["v"]
    assert node == {
        "description": "A value.",
        "anyOf": [{"type": "STRING"}, {"type": "INTEGER", "minimum": 0}],
        "nullable": True,
    }


def test_integer_or_number_is_number() -> None:
    node = params({"properties": {"w": {"anyOf": [{"type": "integer"}, {"type": "number"}]}}})
    assert node["properties"]["w"] == {"type": "NUMBER"}


def test_oneof_becomes_anyof_of_normalised_branches() -> None:
    labels = to_gemini_declaration(load_tool("github-mcp-server__update_issue_labels"))[
        "parameters"
    ]["properties"]["labels"]
    string_branch, object_branch = labels["items"]["anyOf"]
    assert string_branch == {"description": "Label name", "type": "STRING"}
    assert object_branch["type"] == "OBJECT"
    assert object_branch["required"] == ["name"]
    assert object_branch["properties"]["confidence"]["enum"] == ["LOW", "MEDIUM", "HIGH"]
    assert "type" not in labels["items"]  # the branches have different types


def test_oneof_of_objects_keeps_each_variant() -> None:
    properties = to_gemini_declaration(load_tool("github-mcp-server__projects_write"))[
        "parameters"
    ]["properties"]
    updated = properties["updated_field"]
    assert updated["type"] == "OBJECT"
    assert "properties" not in updated  # the variants carry the shape, not a free-form map
    assert "any keys" not in updated["description"]
    by_id, by_name = updated["anyOf"]
    assert by_id["required"] == ["id", "value"]
    assert by_name["required"] == ["name", "value"]
    assert by_id["properties"]["value"]["type"] == "STRING"  # "any JSON value"
    assert "Any JSON value" in by_id["properties"]["value"]["description"]
    assert [b["required"] for b in properties["items"]["items"]["anyOf"]] == [
        ["node_id"],
        ["item_id"],
        ["item_owner", "item_repo", "issue_number"],
    ]


def test_discriminated_oneof_of_refs() -> None:
    items = to_gemini_declaration(load_tool("dynamodb-mcp-server__compute_performances_and_costs"))[
        "parameters"
    ]["properties"]["access_pattern_list"]["items"]
    assert items["type"] == "OBJECT"
    assert len(items["anyOf"]) == 10
    operations = [branch["properties"]["operation"]["enum"] for branch in items["anyOf"]]
    assert ["GetItem"] in operations and ["TransactWriteItems"] in operations
    item_count = items["anyOf"][1]["properties"]["item_count"]
    assert item_count == {"title": "Item Count", "type": "INTEGER", "minimum": 0}


def test_allof_is_merged() -> None:
    schema = {
        "type": "object",
        "$defs": {"Base": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "properties": {
            "x": {
                "allOf": [
                    {"$ref": "#/$defs/Base"},
                    {"properties": {"b": {"type": "integer"}}, "required": ["b", "a"]},
                ],
                "description": "Merged.",
            }
        },
    }
    assert params(schema)["properties"]["x"] == {
        "description": "Merged.",
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}},
        "required": ["b", "a"],
    }


def test_not_and_rule_only_branches_are_dropped() -> None:
    properties = params(
        {
            "properties": {
                "n": {"type": "integer", "not": {"const": 3}},
                "ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            }
        }
    )["properties"]
    assert properties["n"] == {"type": "INTEGER"}
    assert properties["ip"] == {"type": "STRING", "description": "Format: ipv4 or ipv6."}


# --- const, enum, format, typeless -----------------------------------------------------------


def test_string_const_becomes_a_single_value_enum() -> None:
    node = params({"properties": {"op": {"const": "GetItem", "default": "GetItem"}}})
    assert node["properties"]["op"] == {"default": "GetItem", "type": "STRING", "enum": ["GetItem"]}


def test_numeric_consts_list_their_values_in_the_description() -> None:
    node = to_gemini_declaration(load_tool("mcp-trends-hub__get-bilibili-rank"))["parameters"][
        "properties"
    ]["type"]  # a property literally named "type"
    assert node["type"] == "NUMBER"
    assert "enum" not in node
    assert node["default"] == 0
    assert node["description"].startswith("排行榜分区")
    assert "0 (全站)" in node["description"] and "181 (影视)" in node["description"]


def test_non_string_enums_keep_their_type() -> None:
    properties = params(
        {
            "properties": {
                "level": {"type": "integer", "enum": [1, 2, 3]},
                "flag": {"enum": [True, None]},
                "mode": {"type": "string", "enum": ["a", None]},
            }
        }
    )["properties"]
    assert properties["level"] == {"type": "INTEGER", "description": "Allowed values: 1, 2, 3."}
    assert properties["flag"] == {
        "type": "BOOLEAN",
        "nullable": True,
        "description": "Allowed values: true.",
    }
    assert properties["mode"] == {"type": "STRING", "nullable": True, "enum": ["a"]}


def test_unsupported_formats_move_into_the_description() -> None:
    properties = params(
        {
            "properties": {
                "url": {"type": "string", "format": "uri", "description": "Where"},
                "at": {"type": "string", "format": "date-time"},
                "n": {"type": "integer", "format": "int64"},
            }
        }
    )["properties"]
    assert properties["url"] == {"description": "Where. Format: uri.", "type": "STRING"}
    assert properties["at"] == {"type": "STRING", "format": "date-time"}
    assert properties["n"] == {"type": "INTEGER", "format": "int64"}


def test_typeless_schemas_get_an_inferred_type() -> None:
    properties = params(
        {
            "properties": {
                "choice": {"enum": ["x", "y"]},
                "obj": {"properties": {"a": {"type": "string"}}},
                "list": {"items": {"type": "number"}},
                "any": {"description": "Anything."},
                "empty": {},
            }
        }
    )["properties"]
    assert properties["choice"] == {"type": "STRING", "enum": ["x", "y"]}
    assert properties["obj"] == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}
    assert properties["list"] == {"type": "ARRAY", "items": {"type": "NUMBER"}}
    assert properties["any"] == {"description": "Anything. Any JSON value.", "type": "STRING"}
    assert properties["empty"] == {"type": "STRING", "description": "Any JSON value."}


def test_exclusive_bounds_become_plain_bounds() -> None:
    properties = params(
        {
            "properties": {
                "a": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "b": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            }
        }
    )["properties"]
    assert properties["a"] == {"type": "NUMBER", "minimum": 0, "maximum": 1}
    assert properties["b"] == {"type": "INTEGER", "minimum": 0}


# --- objects and arrays ----------------------------------------------------------------------


def test_additional_properties_is_dropped_and_maps_stay_objects() -> None:
    mcp_tool = load_tool("docker-mcp__create-container")
    properties = to_gemini_declaration(mcp_tool)["parameters"]["properties"]
    assert properties["ports"] == {
        "type": "OBJECT",
        "description": "An object with any keys with string values.",
    }
    # OpenAI and Anthropic see the original JSON Schema.
    openai_ports = to_openai_tool(mcp_tool)["function"]["parameters"]["properties"]["ports"]
    assert openai_ports["additionalProperties"] == {"type": "string"}


def test_closed_objects_lose_only_additional_properties() -> None:
    parameters = to_gemini_declaration(load_tool("github-mcp-server__push_files"))["parameters"]
    files = parameters["properties"]["files"]
    assert files["type"] == "ARRAY"
    assert files["items"]["type"] == "OBJECT"
    assert set(files["items"]["properties"]) == {"path", "content"}
    assert files["items"]["required"] == ["path", "content"]
    assert "additionalProperties" not in json.dumps(parameters)


def test_prefix_items_become_items() -> None:
    properties = to_gemini_declaration(load_tool("scientific-computing__plot_function"))[
        "parameters"
    ]["properties"]
    assert properties["xlim"] == {
        "title": "Xlim",
        "default": [-5, 5],
        "type": "ARRAY",
        "items": {"type": "INTEGER"},
        "minItems": 2,
        "maxItems": 2,
    }
    mixed = params(
        {
            "properties": {
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}
            }
        }
    )["properties"]["pair"]
    assert mixed["items"] == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}
    assert mixed["description"] == "Items in this order: string, integer."


def test_arrays_without_items_get_string_items() -> None:
    properties = to_gemini_declaration(load_tool("random-number-mcp__random_choices"))[
        "parameters"
    ]["properties"]
    assert properties["population"]["items"] == {"type": "STRING", "description": "Any JSON value."}
    assert properties["weights"] == {
        "title": "Weights",
        "anyOf": [{"type": "ARRAY", "items": {"type": "NUMBER"}}, {"type": "STRING"}],
        "nullable": True,
    }


def test_properties_named_like_keywords_are_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["a"]},
            "title": {"type": "string"},
            "properties": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"type": "string"}}},
                "required": ["items"],
            },
            "$ref": {"type": "string"},
        },
        "required": ["type", "properties", "$ref", "missing"],
    }
    parameters = params(schema)
    assert parameters == {
        "type": "OBJECT",
        "properties": {
            "type": {"type": "STRING", "enum": ["a"]},
            "title": {"type": "STRING"},
            "properties": {
                "type": "OBJECT",
                "properties": {"items": {"type": "ARRAY", "items": {"type": "STRING"}}},
                "required": ["items"],
            },
            "$ref": {"type": "STRING"},
        },
        "required": ["type", "properties", "$ref"],  # "missing" names no property
    }
    custom = to_gemini_declaration(
        load_tool("github-mcp-server-pr2992__create_or_update_organization_custom_properties")
    )["parameters"]["properties"]["properties"]
    assert custom["type"] == "ARRAY"
    assert custom["items"]["properties"]["required"]["type"] == "BOOLEAN"


def test_a_tool_without_parameters_has_no_gemini_parameters() -> None:
    declaration = to_gemini_declaration(load_tool("github-mcp-server__get_me"))
    assert set(declaration) == {"name", "description"}
    assert to_openai_tool(load_tool("github-mcp-server__get_me"))["function"]["parameters"] == {
        "properties": {},
        "type": "object",
    }


def test_nested_structure_survives_in_depth() -> None:
    parameters = to_gemini_declaration(
        load_tool("github-mcp-server-pr2991__create_repository_ruleset")
    )["parameters"]
    source = load_tool("github-mcp-server-pr2991__create_repository_ruleset").inputSchema

    def walk(src: dict[str, Any], out: dict[str, Any], path: str) -> None:
        if isinstance(src.get("description"), str):
            assert out.get("description", "").startswith(src["description"]), path
        if "enum" in src and all(isinstance(v, str) for v in src["enum"]):
            assert out["enum"] == src["enum"], path
        for name, sub in (src.get("properties") or {}).items():
            walk(sub, out["properties"][name], f"{path}.{name}")
        if isinstance(src.get("items"), dict):
            walk(src["items"], out["items"], f"{path}[]")

    walk(source, parameters, "parameters")


# --- the top level ---------------------------------------------------------------------------


def test_root_rule_only_anyof_is_dropped_for_every_provider() -> None:
    mcp_tool = load_tool("github-mcp-server-pr2632__add_issue_comment")
    source = mcp_tool.inputSchema
    for parameters in (
        to_openai_tool(mcp_tool)["function"]["parameters"],
        to_anthropic_tool(mcp_tool)["input_schema"],
    ):
        assert "anyOf" not in parameters
        assert parameters["properties"] == source["properties"]
        assert parameters["required"] == source["required"]
        assert parameters["dependentSchemas"] == source["dependentSchemas"]
    gemini = to_gemini_declaration(mcp_tool)["parameters"]
    assert set(gemini) == {"type", "properties", "required"}
    assert gemini["properties"]["reaction"]["enum"][0] == "+1"


def test_a_root_without_type_becomes_an_object() -> None:
    schema = {"properties": {"q": {"type": "string"}}}
    assert to_openai_tool(tool(schema))["function"]["parameters"] == {**schema, "type": "object"}
    assert to_anthropic_tool(tool({}))["input_schema"] == {"type": "object"}


def test_a_root_ref_is_resolved() -> None:
    schema = {
        "$ref": "#/$defs/Args",
        "$defs": {"Args": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }
    parameters = to_anthropic_tool(tool(schema))["input_schema"]
    assert parameters["type"] == "object"
    assert parameters["properties"] == {"q": {"type": "string"}}
    assert params(schema) == {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}


def test_a_root_allof_of_objects_is_merged() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}},
        ]
    }
    parameters = to_openai_tool(tool(schema))["function"]["parameters"]
    assert parameters == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
    }


@pytest.mark.parametrize("provider", ALL_PROVIDERS, ids=lambda p: p.value)
@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (
            {
                "anyOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}},
                    {"type": "object", "properties": {"b": {"type": "string"}}},
                ]
            },
            "'anyOf' of alternative parameter shapes",
        ),
        ({"oneOf": [{"$ref": "#/$defs/A"}], "$defs": {"A": {"type": "object"}}}, "'oneOf'"),
        ({"type": "string"}, 'type "string"'),
        ({"type": ["array", "null"], "items": {}}, "must be an object"),
        ({"enum": ["a", "b"]}, "an enum"),
        ({"allOf": [{"type": "string"}]}, "'allOf'"),
    ],
    ids=["anyOf-shapes", "oneOf-ref", "string", "array", "enum", "allOf-string"],
)
def test_roots_that_are_not_one_object_are_refused(
    provider: ProviderType, schema: dict[str, Any], words: str
) -> None:
    reason = check_tool(tool(schema, name="bad_root"), provider)
    assert reason is not None and words in reason
    good = tool({"type": "object", "properties": {}}, name="good")
    with pytest.raises(ToolTranslationError) as caught:
        translate_tools([good, tool(schema, name="bad_root")], provider)
    assert str(caught.value) == f"tool 'bad_root': {reason}"


def test_gemini_refuses_a_map_of_arbitrary_keys_at_the_top() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    assert "arbitrary keys" in (check_tool(tool(schema), ProviderType.GOOGLE) or "")
    assert check_tool(tool(schema), ProviderType.OPENAI) is None


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "openai", "anthropic", "gemini"),
    [
        ("get_weather-2", True, True, True),
        ("a" * 64, True, True, True),
        ("a" * 65, False, True, False),
        ("a" * 128, False, True, False),
        ("1st_tool", True, True, False),
        ("-dash", True, True, False),
        ("ns.tool:v1", False, False, True),
        ("has space", False, False, False),
        ("emoji🙂", False, False, False),
    ],
)
def test_names_follow_each_providers_rule(
    name: str, openai: bool, anthropic: bool, gemini: bool
) -> None:
    mcp_tool = tool({"type": "object", "properties": {}}, name=name)
    for provider, ok in (
        (ProviderType.OPENAI, openai),
        (ProviderType.OPENAI_COMPATIBLE, openai),
        (ProviderType.ANTHROPIC, anthropic),
        (ProviderType.GOOGLE, gemini),
    ):
        reason = check_tool(mcp_tool, provider)
        if ok:
            assert reason is None
        else:
            assert reason is not None and "function name" in reason


# --- dispatch and memo -----------------------------------------------------------------------


def test_dispatch_by_provider() -> None:
    mcp_tool = load_tool("mcp-server-fetch__fetch")
    assert translate_tools([mcp_tool], ProviderType.OPENAI) == [to_openai_tool(mcp_tool)]
    assert translate_tools([mcp_tool], ProviderType.OPENAI_COMPATIBLE) == [to_openai_tool(mcp_tool)]
    assert translate_tools([mcp_tool], ProviderType.ANTHROPIC) == [to_anthropic_tool(mcp_tool)]
    assert translate_tools([mcp_tool], ProviderType.GOOGLE) == [to_gemini_declaration(mcp_tool)]
    assert translate_tools([], ProviderType.GOOGLE) == []


def test_results_are_fresh_copies() -> None:
    mcp_tool = load_tool("server-memory__create_entities")
    first = to_gemini_declaration(mcp_tool)
    first["parameters"]["properties"].clear()
    first["name"] = "changed"
    second = to_gemini_declaration(mcp_tool)
    assert second["name"] == "create_entities"
    assert second["parameters"]["properties"]
    openai = to_openai_tool(mcp_tool)
    openai["function"]["parameters"]["properties"].clear()
    assert to_openai_tool(mcp_tool)["function"]["parameters"]["properties"]


def test_equal_tools_translate_equally() -> None:
    raw = json.loads((FIXTURES / "mcp_tools" / "biomcp__trial_searcher.json").read_text())
    one, two = MCPTool.model_validate(raw), MCPTool.model_validate(raw)
    for provider in ALL_PROVIDERS:
        assert translate_tools([one], provider) == translate_tools([two], provider)


def test_gemini_schema_is_pure() -> None:
    source = load_tool("amazon-qindex-mcp-server__SearchRelevantContent").inputSchema
    before = copy.deepcopy(source)
    assert gemini_schema(source) == gemini_schema(source)
    assert source == before
    with pytest.raises(ValueError, match="does not resolve"):
        gemini_schema({"type": "object", "properties": {"x": {"$ref": "#/nope"}}})
