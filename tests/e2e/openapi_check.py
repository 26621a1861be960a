"""Checks API answers against an OpenAPI 3.1 document: the path template and method must be
documented, the status must be one of the operation's responses, and the JSON body must match
that response's schema. The schema keywords the document uses are checked (type, including
type lists; required; properties; additionalProperties: false; items; enum; minimum; $ref to
#/components/...); an unknown keyword fails the check rather than passing silently."""
import re

CHECKED_KEYWORDS = {"type", "required", "properties", "additionalProperties", "items", "enum", "minimum",
                    "maximum", "minLength", "maxLength", "maxItems", "$ref", "format", "description", "default"}


class OpenApiChecker:
    def __init__(self, document):
        if not str(document.get("openapi", "")).startswith("3.1"):
            raise ValueError("not an OpenAPI 3.1 document")
        self.document = document
        self.checked = 0
        self.paths = []
        for template in document["paths"]:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            self.paths.append((re.compile(pattern), template))

    def resolve(self, node):
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"unsupported $ref {ref}")
            target = self.document
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
        return node

    def check(self, method, path, status, body):
        """The problems with one answer, as a list of strings (empty: it matches)."""
        self.checked += 1
        matches = [t for p, t in self.paths if p.match(path)]
        if not matches:
            if status == 404:  # an endpoint that does not exist: an Error
                return self.match(body, {"$ref": "#/components/schemas/Error"}, "$")
            return [f"{path}: not in the document"]
        item = self.document["paths"][matches[0]]
        operation = item.get(method.lower())
        if operation is None:
            # A 405 answers a method the document does not list: it is an Error.
            if status == 405:
                return self.match(body, {"$ref": "#/components/schemas/Error"}, "$")
            return [f"{method} {matches[0]}: not in the document"]
        responses = operation["responses"]
        response = responses.get(str(status))
        if response is None:
            if status in (404, 405, 413, 431, 500):
                # Answered by the listener itself for any endpoint: always an Error.
                return self.match(body, {"$ref": "#/components/schemas/Error"}, "$")
            return [f"{method} {matches[0]}: status {status} not documented"]
        response = self.resolve(response)
        schema = response["content"]["application/json"]["schema"]
        return self.match(body, schema, "$")

    def match(self, value, schema, at):
        schema = self.resolve(schema)
        unknown = set(schema) - CHECKED_KEYWORDS
        if unknown:
            return [f"{at}: schema keywords not checked: {sorted(unknown)}"]
        problems = []
        types = schema.get("type")
        if types is not None:
            types = types if isinstance(types, list) else [types]
            if not any(self.is_type(value, t) for t in types):
                return [f"{at}: expected {types}, got {type(value).__name__}"]
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{at}: {value!r} not in {schema['enum']}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                problems.append(f"{at}: below {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                problems.append(f"{at}: above {schema['maximum']}")
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                problems.append(f"{at}: longer than {schema['maxLength']}")
            if "minLength" in schema and len(value) < schema["minLength"]:
                problems.append(f"{at}: shorter than {schema['minLength']}")
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    problems.append(f"{at}: {name} is required")
            properties = schema.get("properties", {})
            for name, v in value.items():
                if name in properties:
                    problems += self.match(v, properties[name], f"{at}.{name}")
                elif schema.get("additionalProperties") is False:
                    problems.append(f"{at}: {name} is not in the document")
        if isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                problems.append(f"{at}: more than {schema['maxItems']} items")
            if "items" in schema:
                for i, v in enumerate(value):
                    problems += self.match(v, schema["items"], f"{at}[{i}]")
        return problems

    @staticmethod
    def is_type(value, name):
        return {
            "object": isinstance(value, dict),
            "array": isinstance(value, list),
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "null": value is None,
        }[name]
