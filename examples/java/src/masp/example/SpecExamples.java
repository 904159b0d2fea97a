package masp.example;

import static masp.example.Checks.check;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Checks this client against the worked examples of the specification
 * ({@code docs/spec/examples/}, built from fixed, public test keys): it verifies what the
 * examples say was signed, decrypts what they say was encrypted, and compares every decoded
 * form. Exit 0 if all pass, 1 otherwise.
 *
 * <pre>java -cp out masp.example.SpecExamples [path/to/docs/spec]   (default ../../docs/spec)</pre>
 */
public final class SpecExamples {
    private static Path ex;

    public static void main(String[] args) throws Exception {
        Path spec = Path.of(args.length > 0 ? args[0] : "../../docs/spec");
        ex = spec.resolve("examples");
        if (!Files.isDirectory(ex)) {
            System.out.println("FAIL no examples at " + ex);
            System.exit(1);
        }
        check("test keys are SHA-256 of their label", SpecExamples::testKeys);
        check("key sets", SpecExamples::keySets);
        check("message.sd-jwt", SpecExamples::message);
        check("submission.jwe", SpecExamples::submission);
        check("receipt", SpecExamples::receipt);
        check("auth-assertion.jwt", SpecExamples::assertion);
        check("delivery.nhs.jwe", () -> delivery(spec));
        check("ack.jwt", SpecExamples::ack);
        check("a recipient refuses altered deliveries", () -> refusals(spec));
        Checks.exit();
    }


    private static String text(String name) throws Exception {
        return Files.readString(ex.resolve(name), StandardCharsets.UTF_8).trim();
    }

    private static Map<String, Object> json(String name) throws Exception {
        return Json.parseObject(text(name));
    }

    private static void same(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected " + Json.write(expected) + ", got "
                    + Json.write(actual));
        }
    }

    private static Keys.BrokerKeys brokerKeys() throws Exception {
        return new Keys.BrokerKeys(json("jwks.json"), null);
    }

    private static Keys.AgencyKeys agencyKeys() throws Exception {
        return new Keys.AgencyKeys(json("agency-keys.json"));
    }

    /**
     * What nhs may receive of a type: the spec's example of GET /v1/schemas for nhs, else the
     * repository's received variant, else the body schema without top-level required.
     */
    private static JsonSchema receivedSchema(Path spec, String type) throws Exception {
        for (Path published : List.of(ex.resolve("schema.nhs." + type + ".json"),
                spec.resolve("../../schemas/json/" + type + ".v1.received.schema.json"))) {
            if (Files.exists(published)) {
                return new JsonSchema(Json.parseObject(Files.readString(published)));
            }
        }
        Path repo = spec.resolve("../../schemas/json/" + type + ".v1.schema.json");
        Map<String, Object> s = Json.parseObject(Files.readString(repo));
        s.remove("required");
        return new JsonSchema(s);
    }

    // ------------------------------------------------------------------ checks

    /**
     * A fixed test key, private half included. keys/README.md: only the public halves are
     * published as files; each private scalar is SHA-256 of "masp-wire/2 example/key/<kid>".
     */
    static Jwk testKey(String party, String use) throws Exception {
        Map<String, Object> j = Json.parseObject(
                Files.readString(ex.resolve("keys").resolve(party).resolve(use + ".public.jwk")));
        j.put("d", B64.encode(Jose.sha256("masp-wire/2 example/key/" + j.get("kid"))));
        return Jwk.fromJson(j);
    }

    /** The derived private halves belong to the published public ones. */
    private static void testKeys() throws Exception {
        for (String party : List.of("police", "probation", "nhs", "advocacy", "broker")) {
            Jwk sig = testKey(party, "sig");
            String jws = Jose.sign(Json.obj("alg", "Ed25519", "kid", sig.kid, "typ", "JWT"),
                    "{}".getBytes(StandardCharsets.US_ASCII), sig.privateKey());
            Jose.verify(jws, sig.publicKey(), "Ed25519");
            Jwk enc = testKey(party, "enc");
            String jwe = Jose.encrypt("x".getBytes(StandardCharsets.US_ASCII), enc,
                    Json.obj("cty", "test"));
            same("x", new String(Jose.decrypt(jwe, enc).payload, StandardCharsets.US_ASCII),
                    enc.kid + " opens what was sealed to its public half");
        }
    }

    private static void keySets() throws Exception {
        brokerKeys().encryptionKey();
        agencyKeys();
    }

    private static void message() throws Exception {
        String sdJwt = text("message.sd-jwt");
        SdJwt.Verified v = SdJwt.verify(sdJwt, "police", agencyKeys()::signingKey);
        Map<String, Object> decoded = json("message.decoded.json");
        same(decoded.get("header"), v.header, "header");
        same(decoded.get("payload"), v.claims, "payload");
        List<Object> expectedDigests = new ArrayList<>();
        List<Object> expectedDisclosures = new ArrayList<>();
        for (Object o : Json.asArray(decoded.get("disclosures"), "disclosures")) {
            Map<String, Object> d = Json.asObject(o, "disclosure");
            expectedDigests.add(d.get("digest"));
            expectedDisclosures.add(d.get("disclosure"));
            same(d.get("digest"), SdJwt.digest((String) d.get("disclosure")), "digest");
            same(d.get("decoded"), Json.parse(B64.decodeUtf8((String) d.get("disclosure"))),
                    "decoded disclosure");
        }
        same(expectedDigests, new ArrayList<Object>(v.digests), "digests in order");
        String[] parts = sdJwt.split("~", -1);
        same(expectedDisclosures.size(), parts.length - 2, "number of disclosures");
    }

    private static void submission() throws Exception {
        Jwk brokerEnc = testKey("broker", "enc");
        Jose.Parsed p = Jose.decrypt(text("submission.jwe"), brokerEnc);
        same("masp+sd-jwt", p.header.get("cty"), "cty");
        same(brokerEnc.kid, p.header.get("kid"), "kid");
        same(text("message.sd-jwt"), new String(p.payload, StandardCharsets.US_ASCII),
                "plaintext");
    }

    private static void receipt() throws Exception {
        String jws = text("receipt.jwt");
        Jose.Parsed p = brokerKeys().verify(jws, "masp-receipt+jwt", "Ed25519", "EdDSA");
        Map<String, Object> decoded = json("receipt.decoded.json");
        same(decoded.get("header"), p.header, "header");
        same(decoded.get("payload"), p.payloadJson(), "payload");
        String digest = "sha-256:" + Jose.hex(Jose.sha256(text("message.sd-jwt")));
        same(digest, p.payloadJson().get("payload_digest"), "payload_digest recomputed");
        Map<String, Object> response = json("receipt-response.json");
        same(jws, response.get("receipt"), "receipt-response.json receipt");
        same(p.payloadJson().get("decisions"), response.get("decisions"), "decisions");
    }

    private static void assertion() throws Exception {
        String jws = text("auth-assertion.jwt");
        Jose.Parsed p = Jose.verify(jws, agencyKeys().signingKey("police-sig-20261101"),
                "Ed25519", "EdDSA");
        Map<String, Object> decoded = json("auth-assertion.decoded.json");
        same(decoded.get("header"), p.header, "header");
        same(decoded.get("payload"), p.payloadJson(), "payload");
    }

    private static void delivery(Path spec) throws Exception {
        Agency nhs = new Agency("nhs", testKey("nhs", "sig"), testKey("nhs", "enc"));
        Keys.AgencyKeys ak = agencyKeys();
        JsonSchema received = receivedSchema(spec, "cj_status_update");
        String jwe = text("delivery.nhs.jwe");
        Delivery.Opened o = Delivery.open(jwe, nhs, brokerKeys(), ak::signingKey,
                t -> received);
        Map<String, Object> body = Jose.decrypt(jwe, nhs.enc).payloadJson();
        same(json("delivery.nhs.body.json"), body, "plaintext");
        Map<String, Object> token = json("delivery.nhs.token.decoded.json");
        same(token.get("payload"), o.token, "token payload");
        Map<String, Object> view = json("delivery.nhs.view.json");
        same(view.get("fields"), o.message.body, "fields");
        Map<String, Object> clear = new java.util.LinkedHashMap<>(o.message.claims);
        clear.remove("_sd"); // the view shows the clear claims without the digest machinery
        clear.remove("_sd_alg");
        same(view.get("message"), clear, "message claims");
        same(view.get("disclosed_envelope"), o.message.envelopeDisclosures, "envelope");
        same(Json.asArray(view.get("disclosed_subjects"), "subjects").size(),
                o.message.subjectsByDigest.size(), "disclosed subjects");
    }

    /**
     * Every check of delivery.md, made to fail in turn: the example delivery is taken apart,
     * altered, re-signed with the (public) test keys where the alteration needs it, and sealed
     * to nhs again. Each must be refused.
     */
    private static void refusals(Path spec) throws Exception {
        Agency nhs = new Agency("nhs", testKey("nhs", "sig"), testKey("nhs", "enc"));
        Jwk nhsEncPublic = Jwk.fromJson(nhs.enc.publicJson());
        Jwk brokerSig = testKey("broker", "sig");
        Jwk policeSig = testKey("police", "sig");
        Keys.BrokerKeys bk = brokerKeys();
        Keys.AgencyKeys ak = agencyKeys();
        JsonSchema received = receivedSchema(spec, "cj_status_update");
        Map<String, Object> body = json("delivery.nhs.body.json");
        String sdJwt = (String) body.get("sd_jwt");
        String token = (String) body.get("delivery");
        Map<String, Object> claims = Jose.peekJws(token).payloadJson();
        String[] full = text("message.sd-jwt").split("~");
        String[] parts = sdJwt.split("~");

        java.util.function.BiFunction<Map<String, Object>, Jwk, String> resign = (c, key) -> {
            try {
                return Jose.sign(Json.obj("alg", "Ed25519", "kid", key.kid,
                        "typ", "masp-delivery+jwt"), Json.write(c).getBytes(StandardCharsets.UTF_8),
                        key.privateKey());
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        };
        java.util.function.Function<Map<String, Object>, Map<String, Object>> copy =
                c -> Json.parseObject(Json.write(c));

        Map<String, String> cases = new java.util.LinkedHashMap<>();
        cases.put("a disclosure removed", Json.write(Json.obj("sd_jwt",
                sdJwt.substring(0, sdJwt.length() - parts[parts.length - 1].length() - 1),
                "delivery", token)));
        cases.put("a withheld disclosure added", Json.write(Json.obj("sd_jwt",
                sdJwt + full[4] + "~", "delivery", token)));
        cases.put("a disclosure twice", Json.write(Json.obj("sd_jwt",
                sdJwt + parts[1] + "~", "delivery", token)));
        cases.put("no trailing ~", Json.write(Json.obj("sd_jwt",
                sdJwt.substring(0, sdJwt.length() - 1), "delivery", token)));
        Map<String, Object> c1 = copy.apply(claims);
        c1.put("aud", "probation");
        cases.put("token for another agency", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", resign.apply(c1, brokerSig))));
        cases.put("token signed by an agency key", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", resign.apply(claims, policeSig))));
        Map<String, Object> c2 = copy.apply(claims);
        c2.put("message_id", "01a1fd8c-6900-7000-8000-00000000a002");
        cases.put("token for another message", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", resign.apply(c2, brokerSig))));
        Map<String, Object> c3 = copy.apply(claims);
        c3.put("sender", "probation");
        cases.put("token naming another sender", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", resign.apply(c3, brokerSig))));
        Map<String, Object> c4 = copy.apply(claims);
        Json.asArray(c4.get("disclosed"), "d").remove(0);
        cases.put("token listing fewer disclosures", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", resign.apply(c4, brokerSig))));
        Map<String, Object> c5 = copy.apply(claims);
        Json.asObject(Json.asArray(c5.get("subjects"), "s").get(0), "s0")
                .put("disclosure", SdJwt.digest(full[6]));
        cases.put("a subject disclosure not in the SD-JWT", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", resign.apply(c5, brokerSig))));
        String badSig = parts[0].substring(0, parts[0].length() - 2)
                + (parts[0].endsWith("AA") ? "AQ" : "AA");
        cases.put("the sender's signature broken", Json.write(Json.obj("sd_jwt",
                sdJwt.replace(parts[0], badSig), "delivery", token)));
        String padded = parts[1] + "=";
        cases.put("a padded disclosure", Json.write(Json.obj("sd_jwt",
                sdJwt.replace(parts[1], padded), "delivery", token)));
        cases.put("a repeated member in the body", "{\"sd_jwt\":" + Json.write(sdJwt)
                + ",\"sd_jwt\":" + Json.write(sdJwt) + ",\"delivery\":" + Json.write(token) + "}");
        cases.put("an extra member in the body", Json.write(Json.obj("sd_jwt", sdJwt,
                "delivery", token, "note", "x")));

        for (Map.Entry<String, String> e : cases.entrySet()) {
            String jwe = Jose.encrypt(e.getValue().getBytes(StandardCharsets.UTF_8), nhsEncPublic,
                    Json.obj("kid", nhs.enc.kid, "cty", "masp-delivery+json"));
            try {
                Delivery.open(jwe, nhs, bk, ak::signingKey, t -> received);
            } catch (Exception refused) {
                if (System.getenv("VERBOSE") != null) {
                    System.out.println("     refused " + e.getKey() + ": " + refused.getMessage());
                }
                continue;
            }
            throw new AssertionError(e.getKey() + ": accepted");
        }
        // The untouched body, sealed again, still opens; with another cty it does not.
        String good = Json.write(body);
        Delivery.open(Jose.encrypt(good.getBytes(StandardCharsets.UTF_8), nhsEncPublic,
                Json.obj("kid", nhs.enc.kid, "cty", "masp-delivery+json")), nhs, bk,
                ak::signingKey, t -> received);
        String wrongCty = Jose.encrypt(good.getBytes(StandardCharsets.UTF_8), nhsEncPublic,
                Json.obj("kid", nhs.enc.kid, "cty", "masp+sd-jwt"));
        try {
            Delivery.open(wrongCty, nhs, bk, ak::signingKey, t -> received);
            throw new AssertionError("another cty: accepted");
        } catch (SecurityException expected) {
            // refused
        }
        // A disclosed field the recipient may not receive fails the received schema.
        Map<String, Object> fields = Json.obj("cj_status", "charged", "victim_address",
                Json.obj("lines", List.of("x"), "town", "y", "postcode", "ZZ9 9ZZ"));
        if (received.validate(fields).isEmpty()) {
            throw new AssertionError("the received schema took a field nhs may not receive");
        }
    }

    private static void ack() throws Exception {
        String jws = text("ack.jwt");
        Jose.Parsed p = Jose.verify(jws, agencyKeys().signingKey("nhs-sig-20261101"),
                "Ed25519", "EdDSA");
        Map<String, Object> decoded = json("ack.decoded.json");
        same(decoded.get("header"), p.header, "header");
        same(decoded.get("payload"), p.payloadJson(), "payload");
    }
}
