package masp.example;

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
    private static int failures;
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
        System.out.println(failures == 0 ? "all passed" : failures + " failed");
        System.exit(failures == 0 ? 0 : 1);
    }

    interface Check {
        void run() throws Exception;
    }

    private static void check(String name, Check c) {
        try {
            c.run();
            System.out.println("ok   " + name);
        } catch (Throwable t) {
            failures++;
            System.out.println("FAIL " + name + ": " + t);
        }
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

    // ------------------------------------------------------------------ checks

    /** keys/README.md: each private scalar is SHA-256 of "masp-wire/2 example/key/<kid>". */
    private static void testKeys() throws Exception {
        for (String party : List.of("police", "probation", "nhs", "advocacy", "broker")) {
            for (String use : List.of("sig", "enc")) {
                Jwk k = Jwk.read(ex.resolve("keys").resolve(party).resolve(use + ".private.jwk"));
                byte[] d = Jose.sha256("masp-wire/2 example/key/" + k.kid);
                same(B64.encode(d), B64.encode(k.d), k.kid + " d");
            }
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
        Jwk brokerEnc = Jwk.read(ex.resolve("keys/broker/enc.private.jwk"));
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
        String digest = "sha-256:" + SelfTest.hex(Jose.sha256(text("message.sd-jwt")));
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
        Agency nhs = new Agency("nhs", ex.resolve("keys"));
        Keys.AgencyKeys ak = agencyKeys();
        Map<String, Object> received = Json.parseObject(Files.readString(
                spec.resolve("schemas/received/cj_status_update.v1.received.schema.json")));
        String jwe = text("delivery.nhs.jwe");
        Delivery.Opened o = Delivery.open(jwe, nhs, brokerKeys(), ak::signingKey,
                t -> new JsonSchema(received));
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

    private static void ack() throws Exception {
        String jws = text("ack.jwt");
        Jose.Parsed p = Jose.verify(jws, agencyKeys().signingKey("nhs-sig-20261101"),
                "Ed25519", "EdDSA");
        Map<String, Object> decoded = json("ack.decoded.json");
        same(decoded.get("header"), p.header, "header");
        same(decoded.get("payload"), p.payloadJson(), "payload");
    }
}
