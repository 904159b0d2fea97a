package masp.example;

import java.math.BigDecimal;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * A small JSON Schema (2020-12) validator covering the keywords the message schemas use:
 * type, enum, const, anyOf/allOf/oneOf, $ref to "#/$defs/...", properties, required,
 * additionalProperties, items, min/maxItems, min/maxLength, pattern, minimum/maximum and the
 * formats date, date-time and uuid. Other keywords (title, description, default, x-...) are
 * annotations. It returns the failing paths, written as the broker writes them
 * ({@code victim_address.postcode}, {@code orders[0].status}).
 */
public final class JsonSchema {
    private final Map<String, Object> root;
    private final Map<String, Pattern> patterns = new HashMap<>();

    public JsonSchema(Map<String, Object> root) {
        this.root = root;
    }

    /** The paths that fail, empty when the instance is valid. */
    public List<String> validate(Object instance) {
        List<String> errors = new ArrayList<>();
        check(root, instance, "", errors);
        return errors;
    }

    private void check(Object schemaObj, Object v, String path, List<String> errors) {
        if (schemaObj instanceof Boolean) {
            if (!(Boolean) schemaObj) {
                errors.add(where(path));
            }
            return;
        }
        Map<String, Object> s = Json.asObject(schemaObj, "schema");
        if (s.containsKey("$ref")) {
            check(resolve((String) s.get("$ref")), v, path, errors);
        }
        if (s.containsKey("type") && !typeMatches(s.get("type"), v)) {
            errors.add(where(path));
            return;
        }
        if (s.containsKey("enum") && !containsJson((List<?>) s.get("enum"), v)) {
            errors.add(where(path));
        }
        if (s.containsKey("const") && !jsonEquals(s.get("const"), v)) {
            errors.add(where(path));
        }
        if (s.containsKey("anyOf") || s.containsKey("oneOf")) {
            List<?> alts = (List<?>) (s.containsKey("anyOf") ? s.get("anyOf") : s.get("oneOf"));
            int passing = 0;
            List<String> firstErrors = null;
            for (Object alt : alts) {
                List<String> e = new ArrayList<>();
                check(alt, v, path, e);
                if (e.isEmpty()) {
                    passing++;
                } else if (firstErrors == null || (v != null && typeMatches(
                        Json.asObject(alt, "schema").get("type"), v))) {
                    firstErrors = e; // report the alternative of the value's own type
                }
            }
            boolean ok = s.containsKey("anyOf") ? passing > 0 : passing == 1;
            if (!ok) {
                errors.addAll(firstErrors != null ? firstErrors : List.of(where(path)));
            }
        }
        if (s.containsKey("allOf")) {
            for (Object sub : (List<?>) s.get("allOf")) {
                check(sub, v, path, errors);
            }
        }
        if (v instanceof Map) {
            objectRules(s, Json.asObject(v, "value"), path, errors);
        } else if (v instanceof List) {
            arrayRules(s, Json.asArray(v, "value"), path, errors);
        } else if (v instanceof String) {
            stringRules(s, (String) v, path, errors);
        } else if (v instanceof Long || v instanceof BigDecimal) {
            numberRules(s, v, path, errors);
        }
    }

    private void objectRules(Map<String, Object> s, Map<String, Object> o, String path,
            List<String> errors) {
        Map<String, Object> props = s.containsKey("properties")
                ? Json.asObject(s.get("properties"), "properties") : Map.of();
        if (s.containsKey("required")) {
            for (Object r : (List<?>) s.get("required")) {
                if (!o.containsKey((String) r)) {
                    errors.add(join(path, (String) r));
                }
            }
        }
        for (Map.Entry<String, Object> e : o.entrySet()) {
            String p = join(path, e.getKey());
            if (props.containsKey(e.getKey())) {
                check(props.get(e.getKey()), e.getValue(), p, errors);
            } else if (s.containsKey("additionalProperties")) {
                Object ap = s.get("additionalProperties");
                if (Boolean.FALSE.equals(ap)) {
                    errors.add(e.getKey().matches("^[a-z][a-z0-9_]{0,63}$")
                            ? p : join(path, "<unknown>"));
                } else if (ap instanceof Map) {
                    check(ap, e.getValue(), p, errors);
                }
            }
        }
    }

    private void arrayRules(Map<String, Object> s, List<Object> a, String path,
            List<String> errors) {
        if (s.containsKey("minItems") && a.size() < (Long) s.get("minItems")) {
            errors.add(where(path));
        }
        if (s.containsKey("maxItems") && a.size() > (Long) s.get("maxItems")) {
            errors.add(where(path));
        }
        if (s.containsKey("items")) {
            for (int k = 0; k < a.size(); k++) {
                check(s.get("items"), a.get(k), path + "[" + k + "]", errors);
            }
        }
    }

    private void stringRules(Map<String, Object> s, String v, String path, List<String> errors) {
        int len = v.codePointCount(0, v.length());
        if (s.containsKey("minLength") && len < (Long) s.get("minLength")) {
            errors.add(where(path));
        }
        if (s.containsKey("maxLength") && len > (Long) s.get("maxLength")) {
            errors.add(where(path));
        }
        if (s.containsKey("pattern")) {
            Pattern p = patterns.computeIfAbsent((String) s.get("pattern"), Pattern::compile);
            if (!p.matcher(v).find()) { // JSON Schema patterns are unanchored
                errors.add(where(path));
            }
        }
        if (s.containsKey("format") && !formatMatches((String) s.get("format"), v)) {
            errors.add(where(path));
        }
    }

    private static void numberRules(Map<String, Object> s, Object v, String path,
            List<String> errors) {
        BigDecimal n = new BigDecimal(v.toString());
        if (s.containsKey("minimum") && n.compareTo(new BigDecimal(s.get("minimum").toString())) < 0) {
            errors.add(where(path));
        }
        if (s.containsKey("maximum") && n.compareTo(new BigDecimal(s.get("maximum").toString())) > 0) {
            errors.add(where(path));
        }
    }

    private static boolean formatMatches(String format, String v) {
        try {
            switch (format) {
                case "date":
                    if (!v.matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}$")) {
                        return false;
                    }
                    LocalDate.parse(v);
                    return true;
                case "date-time":
                    OffsetDateTime.parse(v.replace(' ', 'T'));
                    return true;
                case "uuid":
                    return v.matches("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
                            + "-[0-9a-fA-F]{12}$");
                case "time":
                    // The body schemas use local times (09:30, 09:30:00); an offset may follow.
                    return v.matches("^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]+)?)?"
                            + "(Z|[+-][0-9]{2}:[0-9]{2})?$");
                default:
                    return true; // unknown formats are annotations
            }
        } catch (RuntimeException e) {
            return false;
        }
    }

    private Object resolve(String ref) {
        if (!ref.startsWith("#/")) {
            throw new IllegalArgumentException("only local $refs are supported: " + ref);
        }
        Object node = root;
        for (String part : ref.substring(2).split("/")) {
            node = Json.asObject(node, "$ref target").get(part.replace("~1", "/").replace("~0", "~"));
        }
        if (node == null) {
            throw new IllegalArgumentException("unresolvable $ref " + ref);
        }
        return node;
    }

    private static boolean typeMatches(Object type, Object v) {
        if (type == null) {
            return true;
        }
        if (type instanceof List) {
            for (Object t : (List<?>) type) {
                if (typeMatches(t, v)) {
                    return true;
                }
            }
            return false;
        }
        switch ((String) type) {
            case "null": return v == null;
            case "boolean": return v instanceof Boolean;
            case "string": return v instanceof String;
            case "object": return v instanceof Map;
            case "array": return v instanceof List;
            case "number": return v instanceof Long || v instanceof BigDecimal;
            case "integer":
                return v instanceof Long || (v instanceof BigDecimal
                        && ((BigDecimal) v).stripTrailingZeros().scale() <= 0);
            default: return false;
        }
    }

    private static boolean containsJson(List<?> options, Object v) {
        for (Object o : options) {
            if (jsonEquals(o, v)) {
                return true;
            }
        }
        return false;
    }

    private static boolean jsonEquals(Object a, Object b) {
        if ((a instanceof Long || a instanceof BigDecimal) && (b instanceof Long || b instanceof BigDecimal)) {
            return new BigDecimal(a.toString()).compareTo(new BigDecimal(b.toString())) == 0;
        }
        return Json.write(a).equals(Json.write(b));
    }

    private static String join(String path, String name) {
        return path.isEmpty() ? name : path + "." + name;
    }

    private static String where(String path) {
        return path.isEmpty() ? "<root>" : path;
    }
}
