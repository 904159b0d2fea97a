package masp.example;

import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;

/**
 * The round trip against a running broker, one line per step: {@code ok <step>}, or
 * {@code FAIL <step>: <reason>} and exit 1. Then one JSON line with the message id and the
 * state of each delivery.
 *
 * <p>Environment: MASP_URL (broker base URL), MASP_AMQP_URL (amqp://user:pass@host:port/vhost),
 * MASP_NAMESPACE (may be empty), MASP_KEYS_DIR ({@code <agency>/sig.private.jwk} and
 * {@code enc.private.jwk} for police, probation, nhs and advocacy). Optional:
 * MASP_BROKER_THUMBPRINTS ({@code kid=thumbprint,...}: the broker keys to pin, given by the
 * operator out of band; without it the keys fetched at start-up are pinned as they are),
 * MASP_SCHEMAS_DIR (the repository's schemas/json, default ../../schemas/json), MASP_TIMEOUT_S
 * (how long to wait for each asynchronous step, default 60), and what the operator set up
 * for each agency in the operator's own notation: MASP_DELIVERY_MODES (e.g.
 * {@code advocacy=mailbox}; unlisted agencies amqp) and MASP_JWS_ALG_NAMES (e.g.
 * {@code probation=EdDSA}; unlisted agencies Ed25519), the broker's defaults when unset.
 */
public final class Main {
    private static final SecureRandom RNG = new SecureRandom();

    private final Http http;
    private final String amqpUrl;
    private final String ns; // "" or "<namespace>."
    private final Path schemasDir;
    private final long timeoutMs;
    private final Map<String, Agency> agencies = new LinkedHashMap<>();
    /** What the operator told each agency: its delivery mode and its JWS alg name. */
    private final Map<String, String> deliveryModes;
    private final Map<String, String> algNames;

    private Keys.BrokerKeys broker;
    private Keys.AgencyKeys agencyKeys;
    private final Map<String, JsonSchema> receivedSchemas = new HashMap<>();
    private final Set<String> handedOver = new HashSet<>(); // agency/delivery id, for de-duplication

    private Amqp events; // police's event subscription
    private String eventsQueue;

    // What this run sent, to compare with what each recipient receives.
    private String messageId; // the case_referral's jti
    private String consentRef;
    private final Map<String, Map<String, Object>> subjectsSent = new HashMap<>();
    private SdJwt.Issued lastReferral;
    private Object lastReceipt;
    private final Map<String, Long> inboxBefore = new HashMap<>(); // mailbox-mode inboxes
    private final Map<String, Object> deliveriesOut = new TreeMap<>(); // the final JSON line
    private String lastRefusal; // why the last unverifiable delivery was refused, for FAIL lines

    /** A step's failure: its one-line reason. */
    static final class StepFailed extends Exception {
        private static final long serialVersionUID = 1L;

        StepFailed(String reason) {
            super(reason);
        }
    }

    interface Step {
        void run() throws Exception;
    }

    Main(Map<String, String> env) throws Exception {
        this.http = new Http(require(env, "MASP_URL"));
        this.amqpUrl = require(env, "MASP_AMQP_URL");
        // The namespace N prefixes every RabbitMQ name as "N."; "N." is the same namespace.
        String n = env.getOrDefault("MASP_NAMESPACE", "");
        n = n.endsWith(".") ? n.substring(0, n.length() - 1) : n;
        this.ns = n.isEmpty() ? "" : n + ".";
        this.schemasDir = findSchemas(env.get("MASP_SCHEMAS_DIR"));
        this.timeoutMs = 1000L * Long.parseLong(env.getOrDefault("MASP_TIMEOUT_S", "60"));
        this.deliveryModes = pairs(env.getOrDefault("MASP_DELIVERY_MODES", ""));
        this.algNames = pairs(env.getOrDefault("MASP_JWS_ALG_NAMES", ""));
        Path keys = Path.of(require(env, "MASP_KEYS_DIR"));
        for (String a : List.of("police", "probation", "nhs", "advocacy")) {
            agencies.put(a, new Agency(a, keys));
        }
    }

    /** {@code a=x,b=y} as a map (the operator's notation for per-agency settings). */
    static Map<String, String> pairs(String text) {
        Map<String, String> m = new HashMap<>();
        if (text == null) {
            return m;
        }
        for (String pair : text.split(",")) {
            String[] kv = pair.trim().split("=", 2);
            if (kv.length == 2) {
                m.put(kv[0].trim(), kv[1].trim());
            }
        }
        return m;
    }

    /** The repository's schemas/json: MASP_SCHEMAS_DIR, else from examples/java or the root. */
    private static Path findSchemas(String given) {
        if (given != null && !given.isEmpty()) {
            return Path.of(given);
        }
        for (String p : List.of("../../schemas/json", "schemas/json")) {
            if (Files.isDirectory(Path.of(p))) {
                return Path.of(p);
            }
        }
        return Path.of("../../schemas/json");
    }

    private static String require(Map<String, String> env, String name) {
        String v = env.get(name);
        if (v == null || v.isEmpty()) {
            System.out.println("FAIL setup: " + name + " is not set");
            System.exit(1);
        }
        return v;
    }

    public static void main(String[] args) {
        int rc;
        Main m = null;
        try {
            m = new Main(System.getenv());
            m.run();
            rc = 0;
        } catch (StepFailed f) {
            rc = 1;
        } catch (Exception e) {
            System.out.println("FAIL setup: " + oneLine(e));
            rc = 1;
        } finally {
            if (m != null) {
                m.cleanUp();
            }
        }
        System.exit(rc);
    }

    private void step(String name, Step s) throws StepFailed {
        try {
            s.run();
        } catch (Exception e) {
            System.out.println("FAIL " + name + ": " + oneLine(e));
            System.out.flush();
            throw new StepFailed(name);
        }
        System.out.println("ok " + name);
        System.out.flush();
    }

    static String oneLine(Throwable e) {
        String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        if (e instanceof java.io.IOException && !(e instanceof Amqp.AmqpException)) {
            m = e.getClass().getSimpleName() + ": " + m;
        }
        return m.replace('\n', ' ');
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new IllegalStateException(what);
        }
    }

    // ================================================================== the run


    void run() throws Exception {
        Agency police = agencies.get("police");

        step("keys", this::discoverKeys);
        step("events-subscribe", this::subscribeToEvents);

        // The case: a suspect and a victim, both by pseudonymous references invented here.
        String run = String.format("%06d", RNG.nextInt(1_000_000));
        String caseId = "RCJAVA-" + LocalDate.now(ZoneOffset.UTC).toString().replace("-", "")
                + "-" + run;
        Map<String, Object> suspect = Json.obj("ref", "nominal:RCJ-S" + run, "category", "suspect");
        Map<String, Object> victim = Json.obj("ref", "nominal:RCJ-V" + run, "category", "victim");
        consentRef = "CONSENT-" + run + "-V1";
        subjectsSent.put("suspect", suspect);
        subjectsSent.put("victim", victim);

        // A mailbox-mode agency's AMQP inbox must not grow while the run delivers to it.
        for (String r : List.of("advocacy", "probation", "nhs")) {
            if (deliveryModes.getOrDefault(r, "amqp").equals("mailbox")) {
                inboxBefore.put(r, inboxCount(r));
            }
        }
        step("consent", () -> recordConsent(police, caseId, victim));
        step("submit", () -> submitReferral(police, caseId, suspect, victim));
        // Each recipient receives the way its operator set it up (mailbox.md "Delivery modes").
        for (String r : List.of("advocacy", "probation", "nhs")) {
            Agency me = agencies.get(r);
            String mode = deliveryModes.getOrDefault(r, "amqp");
            step(r + "-" + mode, () -> {
                Delivery.Opened o = mode.equals("mailbox") ? receiveByMailbox(me)
                        : receiveByAmqp(me);
                String alg = algNames.getOrDefault(r, "Ed25519");
                check(alg.equals(o.tokenAlg), r + "'s delivery token has alg " + o.tokenAlg
                        + ", its registered name is " + alg);
                if (r.equals("nhs")) {
                    checkNothingOfTheVictim(o, victim);
                }
            });
        }
        step("message-state", () -> awaitAcknowledged(police));
        step("events-read", this::readEvents);
        step("amqp-submit", () -> submitOverAmqp(police));
        step("negative", () -> negativeChecks(police, caseId, suspect));

        Map<String, Object> out = Json.obj("message_id", messageId, "deliveries", deliveriesOut);
        System.out.println(Json.write(out));
    }

    void cleanUp() {
        if (events != null) {
            try {
                if (eventsQueue != null) {
                    events.queueDelete(eventsQueue);
                }
            } catch (Exception ignored) {
                // best effort: the queue also expires on its own
            }
            try {
                events.close();
            } catch (Exception ignored) {
                // closing anyway
            }
        }
    }

    // ================================================================== 1. keys

    private void discoverKeys() throws Exception {
        Http.Response r = http.get("/.well-known/jwks.json", null);
        check(r.status == 200, "GET /.well-known/jwks.json: " + r);
        // kid=thumbprint pairs from the operator, if given; else the keys as fetched now.
        Map<String, String> pins = pairs(System.getenv("MASP_BROKER_THUMBPRINTS"));
        broker = new Keys.BrokerKeys(r.json(), pins);
        broker.encryptionKey(); // there must be one to seal to
        refreshAgencyKeys();
    }

    private void refreshAgencyKeys() throws Exception {
        Http.Response r = http.get("/v1/agency-keys", null);
        check(r.status == 200, "GET /v1/agency-keys: " + r);
        agencyKeys = new Keys.AgencyKeys(r.json());
    }

    /** A sender's signing key by kid; an unknown kid re-reads the agency set once. */
    private PublicKey senderKey(String kid) {
        try {
            if (!agencyKeys.has(kid)) {
                refreshAgencyKeys();
            }
        } catch (Exception e) {
            return null;
        }
        return agencyKeys.signingKey(kid);
    }

    // ================================================================== 2. events

    private void subscribeToEvents() throws Exception {
        events = Amqp.connect(amqpUrl);
        String q = ns + "events.police.java-" + UUID.randomUUID().toString().substring(0, 8);
        // Durable, as events.md asks; x-expires removes it if this run dies before deleting it.
        eventsQueue = events.queueDeclare(q, false, true, false, false,
                Json.obj("x-expires", 15 * 60 * 1000));
        events.queueBind(eventsQueue, ns + "masp.events", "police.#");
    }

    // ================================================================== 3. submit

    /** A UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, the rest random. */
    static String uuid7() {
        long ms = System.currentTimeMillis();
        long hi = (ms << 16) | 0x7000L | (RNG.nextInt() & 0x0fffL);
        long lo = (RNG.nextLong() & 0x3fffffffffffffffL) | 0x8000000000000000L;
        return new UUID(hi, lo).toString();
    }

    private static Map<String, Object> envelope(String iss, String type, String caseId,
            String purpose) {
        long now = Agency.now();
        return Json.obj("iss", iss, "jti", uuid7(), "iat", now, "exp", now + 3600,
                "masp_type", type, "masp_schema", "1", "case_id", caseId, "purpose", purpose);
    }

    /** What the broker answered to a submission, its receipt verified. */
    static final class Submitted {
        final Http.Response response;
        final Map<String, Object> receipt;
        final Map<String, String> decisions = new TreeMap<>();

        Submitted(Http.Response response, Map<String, Object> receipt) {
            this.response = response;
            this.receipt = receipt;
        }
    }

    /** Seals an SD-JWT to the broker's encryption key and POSTs it. */
    private Http.Response post(Agency as, String sdJwt) throws Exception {
        Jwk brokerEnc = broker.encryptionKey();
        String jwe = Jose.encrypt(sdJwt.getBytes(StandardCharsets.US_ASCII),
                brokerEnc, Json.obj("kid", brokerEnc.kid, "cty", "masp+sd-jwt"));
        return http.post("/v1/messages", as.assertion(), "application/jose", "application/json",
                jwe);
    }

    /** Submits and checks the receipt as submission.md requires. */
    private Submitted submit(Agency as, SdJwt.Issued msg, String jti) throws Exception {
        Http.Response r = post(as, msg.serialized);
        check(r.status == 202, "POST /v1/messages: " + r);
        Map<String, Object> body = r.json();
        String receiptJws = Json.asString(body.get("receipt"), "receipt");
        Jose.Parsed p = broker.verify(receiptJws, "masp-receipt+jwt", "Ed25519", "EdDSA");
        Map<String, Object> c = p.payloadJson();
        String alg = algNames.getOrDefault(as.id, "Ed25519");
        check(alg.equals(p.header.get("alg")), "receipt alg is " + p.header.get("alg")
                + ", registered " + alg);
        check(as.id.equals(c.get("aud")), "receipt aud is " + c.get("aud"));
        check(jti.equals(c.get("message_id")), "receipt message_id is " + c.get("message_id"));
        String digest = "sha-256:" + Jose.hex(Jose.sha256(msg.serialized));
        check(digest.equals(c.get("payload_digest")), "receipt payload_digest differs from ours");
        Json.asLong(c.get("iat"), "receipt iat");
        Json.asLong(c.get("audit_seq"), "receipt audit_seq");
        Json.asString(c.get("received_at"), "receipt received_at");
        // The JSON members beside the receipt only repeat it.
        check(jti.equals(body.get("message_id")), "response message_id differs from the receipt");
        // (Map equality ignores member order, as JSON does.)
        check(Objects.equals(c.get("audit_seq"), body.get("audit_seq")),
                "response audit_seq differs from the receipt");
        check(Objects.equals(c.get("decisions"), body.get("decisions")),
                "response decisions differ from the receipt");
        Submitted s = new Submitted(r, c);
        String previous = "";
        for (Object o : Json.asArray(c.get("decisions"), "decisions")) {
            Map<String, Object> d = Json.asObject(o, "decision");
            String recipient = Json.asString(d.get("recipient"), "decision recipient");
            String decision = Json.asString(d.get("decision"), "decision");
            check(List.of("permit", "permit_with_redaction", "require_override", "deny")
                    .contains(decision), "unknown decision " + decision);
            check(d.get("clause") == null || d.get("clause") instanceof String, "clause type");
            check(recipient.compareTo(previous) > 0, "decisions are not sorted by recipient");
            previous = recipient;
            s.decisions.put(recipient, decision);
        }
        return s;
    }

    private static boolean permitted(String decision) {
        return "permit".equals(decision) || "permit_with_redaction".equals(decision);
    }

    /**
     * The victim's consent to the referral reaching the advocacy service. The clause
     * police -> advocacy for case_referral requires it; police is a DSA consent recorder for
     * victim consent, and a consent_change message records the decision.
     */
    private void recordConsent(Agency police, String caseId, Map<String, Object> victim)
            throws Exception {
        Map<String, Object> env = envelope("police", "consent_change", caseId, "case_management");
        Map<String, Object> body = Json.obj("victim_consent", Json.obj(
                "status", "given",
                "scope", Json.obj("purposes", List.of("risk_management"),
                        "recipients", List.of("advocacy"),
                        "message_types", List.of("case_referral")),
                "effective_date", LocalDate.now(ZoneOffset.UTC).toString(),
                "given_by", "subject"));
        validateOutgoing("consent_change", body);
        SdJwt.Issued msg = SdJwt.issue(env, body, List.of(victim), consentRef, police.sig,
                police.alg);
        Submitted s = submit(police, msg, (String) env.get("jti"));
        check(permitted(s.decisions.get("advocacy")),
                "consent_change to advocacy: " + s.decisions);
    }

    private void submitReferral(Agency police, String caseId, Map<String, Object> suspect,
            Map<String, Object> victim) throws Exception {
        Map<String, Object> env = envelope("police", "case_referral", caseId, "risk_management");
        messageId = (String) env.get("jti");
        Map<String, Object> body = referralBody();
        validateOutgoing("case_referral", body);
        SdJwt.Issued msg = SdJwt.issue(env, body, List.of(suspect, victim), consentRef,
                police.sig, police.alg);
        lastReferral = msg;
        Submitted s = submit(police, msg, messageId);
        lastReceipt = s.response.json().get("receipt");
        for (String r : List.of("probation", "nhs", "advocacy")) {
            check(permitted(s.decisions.get(r)), "no delivery for " + r + ": " + s.decisions);
        }
        check(!s.decisions.containsKey("police"), "the sender is among the recipients");
    }


    /** Ready messages on an agency's AMQP inbox, or -1 when it has none (or it cannot be read). */
    private long inboxCount(String agency) {
        try (Amqp c = Amqp.connect(amqpUrl)) {
            return c.messageCount(ns + "inbox." + agency);
        } catch (Exception e) {
            return -1;
        }
    }

    /** An invented case_referral body: every value made up, no real person. */
    private static Map<String, Object> referralBody() {
        String today = LocalDate.now(ZoneOffset.UTC).toString();
        Map<String, Object> b = new LinkedHashMap<>();
        b.put("perpetrator_name", Json.obj("given", "Example", "family", "Suspect"));
        b.put("perpetrator_aliases", List.of("example-handle-1"));
        b.put("offence_codes", List.of("PH97003"));
        b.put("cj_status", "under_investigation");
        b.put("behaviour_summary", "Repeated unwanted messages and visits (invented test text).");
        b.put("crime_reference", "RCJ/0001/26");
        b.put("sash_concern_level", "medium");
        b.put("risk_assessed_on", today);
        b.put("victim_name", Json.obj("given", "Example", "family", "Victim"));
        b.put("victim_relationship_to_perpetrator", "ex_partner");
        b.put("victim_address", Json.obj("lines", List.of("1 Example Street"), "town", "Exampleton",
                "postcode", "ZZ9 9ZZ"));
        b.put("exclusion_zones", List.of(Json.obj("description", "Not to enter Example Street",
                "imposed_by", "bail")));
        b.put("referrer", Json.obj("name", "Example Officer", "role", "Investigating officer",
                "agency", "police", "staff_ref", "EX1234",
                "phone", "01632 960000")); // a number reserved for drama: invented
        return b;
    }

    /** Checks an outgoing body against the repository's schema, when it can be found. */
    private void validateOutgoing(String type, Map<String, Object> body) throws Exception {
        Path f = schemasDir.resolve(type + ".v1.schema.json");
        if (!Files.exists(f)) {
            return; // the broker checks it anyway
        }
        List<String> errors = new JsonSchema(Json.parseObject(Files.readString(f))).validate(body);
        check(errors.isEmpty(), "our own " + type + " body fails its schema at " + errors);
    }

    // ================================================================== 4-6. receive

    /** The schema of what {@code me} may receive of a type: GET /v1/schemas, else the repo's. */
    private JsonSchema receivedSchema(Agency me, String type) {
        return receivedSchemas.computeIfAbsent(me.id + "/" + type, k -> {
            try {
                Http.Response r = http.get("/v1/schemas/" + type, me.assertion());
                if (r.status == 200) {
                    return new JsonSchema(r.json());
                }
                if (r.status != 404 || "not-found".equals(r.problemCode())) {
                    throw new IllegalStateException("GET /v1/schemas/" + type + ": " + r);
                }
                // No such route on this broker: the deployment-independent variant.
                Path received = schemasDir.resolve(type + ".v1.received.schema.json");
                if (Files.exists(received)) {
                    return new JsonSchema(Json.parseObject(Files.readString(received)));
                }
                Map<String, Object> s = Json.parseObject(
                        Files.readString(schemasDir.resolve(type + ".v1.schema.json")));
                s.remove("required");
                return new JsonSchema(s);
            } catch (RuntimeException e) {
                throw e;
            } catch (Exception e) {
                throw new IllegalStateException(e.getMessage(), e);
            }
        });
    }

    private Delivery.Opened open(Agency me, String jwe) throws Exception {
        return Delivery.open(jwe, me, broker, this::senderKey, t -> receivedSchema(me, t));
    }

    /** Hands a verified delivery to "the application" once per delivery id. */
    private boolean handOver(Agency me, Delivery.Opened o) {
        return handedOver.add(me.id + "/" + o.deliveryId());
    }

    /** Advocacy: poll the mailbox, open each delivery, acknowledge over HTTP. */
    private Delivery.Opened receiveByMailbox(Agency me) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        Set<String> refused = new HashSet<>();
        lastRefusal = null;
        Delivery.Opened target = null;
        while (target == null) {
            check(System.currentTimeMillis() < deadline, lastRefusal != null
                    ? "refused a delivery, " + lastRefusal : "no delivery of " + messageId
                    + " in the mailbox after " + timeoutMs / 1000 + " s");
            List<Map<String, Object>> waiting = new ArrayList<>();
            // What is still to fetch: queued, published or dead-lettered (mailbox.md).
            for (String state : List.of("queued", "published", "dead_lettered")) {
                Http.Response r = http.get("/v1/mailbox?state=" + state, me.assertion());
                check(r.status == 200, "GET /v1/mailbox: " + r);
                for (Object o : Json.asArray(r.json().get("deliveries"), "deliveries")) {
                    waiting.add(Json.asObject(o, "delivery summary"));
                }
            }
            for (Map<String, Object> summary : waiting) {
                String id = Json.asString(summary.get("delivery_id"), "delivery_id");
                Http.Response r = http.get("/v1/mailbox/" + id, me.assertion());
                check(r.status == 200, "GET /v1/mailbox/" + id + ": " + r);
                if (!"application/jose".equals(r.mediaType)) {
                    continue; // settled meanwhile: a summary, no ciphertext
                }
                Delivery.Opened o;
                try {
                    o = open(me, r.body.trim());
                    check(id.equals(o.deliveryId()), "the mailbox served another delivery");
                } catch (Exception e) {
                    // Unverifiable: not acknowledged (its delivery id cannot be trusted).
                    if (refused.add(id)) {
                        lastRefusal = id + ": " + oneLine(e);
                        System.err.println(me.id + ": refused delivery " + lastRefusal);
                    }
                    continue;
                }
                handOver(me, o);
                ackOverHttp(me, o);
                if (messageId.equals(o.messageId())) {
                    target = o;
                    deliveriesOut.put(me.id, Json.obj("delivery_id", o.deliveryId(),
                            "via", "mailbox", "disclosed_fields", new ArrayList<>(o.message.body.keySet())));
                }
            }
            if (target == null) {
                Thread.sleep(500);
            }
        }
        checkReferralView(me, target);
        // ... and nothing reached its AMQP inbox meanwhile.
        long before = inboxBefore.getOrDefault(me.id, -1L);
        long after = inboxCount(me.id);
        check(before < 0 || after <= before, ns + "inbox." + me.id + " went from " + before
                + " to " + after + " messages: the broker published to a mailbox-mode agency");
        return target;
    }

    private void ackOverHttp(Agency me, Delivery.Opened o) throws Exception {
        String ack = me.ack(o.deliveryId(), o.messageId(), "accepted", null);
        Http.Response r = http.post("/v1/mailbox/" + o.deliveryId() + "/ack", me.assertion(),
                "application/jose", null, ack);
        check(r.status == 200, "ack over HTTP: " + r);
        Map<String, Object> a = r.json();
        check(o.deliveryId().equals(a.get("delivery_id")), "ack answer names another delivery");
        check("acknowledged".equals(a.get("state")), "ack answer state is " + a.get("state"));
        check(a.get("duplicate") instanceof Boolean, "ack answer has no duplicate flag");
    }

    /**
     * Probation and nhs: consume {@code inbox.<agency>}, verify each delivery, publish the
     * signed acknowledgement to {@code masp.acks}, then basic.ack. Returns our message's one.
     */
    private Delivery.Opened receiveByAmqp(Agency me) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        lastRefusal = null;
        Delivery.Opened target = null;
        try (Amqp c = Amqp.connect(amqpUrl)) {
            c.qos(16);
            c.confirmSelect();
            c.consume(ns + "inbox." + me.id);
            // Every delivery in the inbox is verified and acknowledged, not only ours: once ours
            // has come, the loop drains what else is there and stops when the queue is idle.
            while (true) {
                long left = deadline - System.currentTimeMillis();
                check(target != null || left > 0, lastRefusal != null ? "refused a delivery, "
                        + lastRefusal : "no delivery of " + messageId + " on " + ns + "inbox."
                        + me.id + " after " + timeoutMs / 1000 + " s");
                Amqp.Message m = c.nextDelivery(target != null ? 1000 : Math.min(left, 1000));
                if (m == null) {
                    if (target != null) {
                        break;
                    }
                    continue;
                }
                Delivery.Opened o;
                try {
                    o = open(me, m.bodyText().trim());
                } catch (Exception e) {
                    // Unverifiable: never acknowledged, rejected to the dead-letter queue.
                    c.reject(m.deliveryTag, false);
                    lastRefusal = oneLine(e);
                    System.err.println(me.id + ": refused a delivery: " + lastRefusal);
                    continue;
                }
                handOver(me, o); // a repeat is not handed over again, but is acknowledged again
                Amqp.Properties p = new Amqp.Properties();
                p.contentType = "application/jose";
                p.deliveryMode = 2;
                c.publish(ns + "masp.acks", "", true, p,
                        me.ack(o.deliveryId(), o.messageId(), "accepted", null)
                                .getBytes(StandardCharsets.US_ASCII));
                c.ack(m.deliveryTag);
                if (messageId.equals(o.messageId())) {
                    target = o;
                    deliveriesOut.put(me.id, Json.obj("delivery_id", o.deliveryId(), "via", "amqp",
                            "disclosed_fields", new ArrayList<>(o.message.body.keySet())));
                }
            }
        }
        checkReferralView(me, target);
        return target;
    }

    /** What every recipient of our referral must see: our envelope, under our signature. */
    private void checkReferralView(Agency me, Delivery.Opened o) {
        Map<String, Object> c = o.message.claims;
        check("police".equals(o.token.get("sender")), "sender is " + o.token.get("sender"));
        check("case_referral".equals(c.get("masp_type")), "masp_type is " + c.get("masp_type"));
        check("risk_management".equals(o.token.get("purpose")), "purpose is "
                + o.token.get("purpose"));
        Map<String, Object> sent = referralBody();
        for (Map.Entry<String, Object> f : o.message.body.entrySet()) {
            check(Objects.equals(sent.get(f.getKey()), f.getValue()),
                    me.id + " received a changed value for " + f.getKey());
        }
        // consent_ref reaches only a recipient whose clause requires consent (advocacy's).
        Object consent = o.message.envelopeDisclosures.get("consent_ref");
        check(me.id.equals("advocacy") ? consentRef.equals(consent) : consent == null,
                me.id + " received consent_ref " + consent);
        check(!o.message.envelopeDisclosures.containsKey("override"), "an override reached "
                + me.id);
        // Subjects: the victim's reference only where victim_identity is granted (not nhs,
        // which must not hear of her at all); the suspect's where perpetrator_identity is.
        Set<String> categories = new HashSet<>();
        for (Map<String, Object> subject : o.message.subjectsByDigest.values()) {
            categories.add((String) subject.get("category"));
            check(subject.equals(subjectsSent.get(subject.get("category"))),
                    me.id + " received a changed subject");
        }
        Set<String> expected = me.id.equals("nhs") ? Set.of("suspect") : Set.of("suspect", "victim");
        check(categories.equals(expected), me.id + " received subjects " + categories);
        List<?> tokenSubjects = (List<?>) o.token.get("subjects");
        check(tokenSubjects.size() == expected.size(), me.id + "'s token lists "
                + tokenSubjects.size() + " subjects");
        long withheld = (Long) o.token.get("withheld");
        check(withheld == sent.size() - o.message.body.size(), me.id + ": withheld is " + withheld
                + " but " + (sent.size() - o.message.body.size()) + " fields are missing");
    }

    /** nhs treats the perpetrator: no victim field, no victim subject, no victim pseudonym. */
    private void checkNothingOfTheVictim(Delivery.Opened o, Map<String, Object> victim)
            throws Exception {
        Map<String, String> classes = dataClasses("case_referral");
        for (String field : o.message.body.keySet()) {
            String cls = classes.getOrDefault(field, "");
            check(!field.startsWith("victim_") && !cls.startsWith("victim_"),
                    "nhs received " + field + " (" + cls + ")");
        }
        for (Map<String, Object> s : o.message.subjectsByDigest.values()) {
            check(!"victim".equals(s.get("category")), "nhs received the victim's reference");
        }
        for (Object s : (List<?>) o.token.get("subjects")) {
            check(!"victim".equals(((Map<?, ?>) s).get("category")),
                    "nhs's token names a victim subject");
        }
        check(!Json.write(o.message.body).contains((String) victim.get("ref")),
                "nhs received the victim's reference in a field");
    }

    /** Field -> x-masp-data-class, from the repository's body schema. */
    private Map<String, String> dataClasses(String type) throws Exception {
        Map<String, String> out = new HashMap<>();
        Path f = schemasDir.resolve(type + ".v1.schema.json");
        if (!Files.exists(f)) {
            return out;
        }
        Map<String, Object> props = Json.asObject(
                Json.parseObject(Files.readString(f)).get("properties"), "properties");
        for (Map.Entry<String, Object> p : props.entrySet()) {
            Object c = Json.asObject(p.getValue(), "property").get("x-masp-data-class");
            if (c instanceof String) {
                out.put(p.getKey(), (String) c);
            }
        }
        return out;
    }

    // ================================================================== 7. state

    private void awaitAcknowledged(Agency police) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (true) {
            Http.Response r = http.get("/v1/messages/" + messageId, police.assertion());
            check(r.status == 200, "GET /v1/messages/" + messageId + ": " + r);
            Map<String, Object> m = r.json();
            check(messageId.equals(m.get("message_id")), "state of another message");
            Map<String, String> states = new TreeMap<>();
            for (Object o : Json.asArray(m.get("deliveries"), "deliveries")) {
                Map<String, Object> d = Json.asObject(o, "delivery record");
                states.put((String) d.get("recipient"), (String) d.get("state"));
                Object out = deliveriesOut.get(d.get("recipient"));
                if (out instanceof Map) {
                    @SuppressWarnings("unchecked")
                    Map<String, Object> rec = (Map<String, Object>) out;
                    check(d.get("delivery_id").equals(rec.get("delivery_id")),
                            "the sender's view names another delivery for " + d.get("recipient"));
                    rec.put("state", d.get("state"));
                }
            }
            check(states.keySet().equals(Set.of("probation", "nhs", "advocacy")),
                    "deliveries are for " + states.keySet());
            if (states.values().stream().allMatch("acknowledged"::equals)) {
                return;
            }
            check(System.currentTimeMillis() < deadline, "not all acknowledged: " + states);
            Thread.sleep(500);
        }
    }

    // ================================================================== 8. events

    private void readEvents() throws Exception {
        Set<String> acked = new HashSet<>();
        Set<String> seen = new HashSet<>();
        long deadline = System.currentTimeMillis() + timeoutMs;
        events.qos(64);
        String tag = events.consume(eventsQueue);
        while (!acked.equals(Set.of("probation", "nhs", "advocacy"))) {
            long left = deadline - System.currentTimeMillis();
            check(left > 0, "delivery.acknowledged seen only for " + acked);
            Amqp.Message m = events.nextDelivery(Math.min(left, 1000));
            if (m == null) {
                continue;
            }
            events.ack(m.deliveryTag);
            String dedupe = m.properties.messageId != null ? m.properties.messageId
                    : m.bodyText();
            if (!seen.add(dedupe)) {
                continue; // a batch published again after a broker restart
            }
            Map<String, Object> e = Json.parseObject(m.bodyText());
            check("police".equals(e.get("agency")), "an event for " + e.get("agency"));
            check(m.routingKey.startsWith("police."), "an event routed " + m.routingKey);
            String name = (String) e.get("event");
            // The event name, with or without the audience prefix of the routing key.
            if (name != null && name.startsWith("police.")) {
                name = name.substring("police.".length());
            }
            if ("delivery.acknowledged".equals(name) && messageId.equals(e.get("message_id"))) {
                check("acknowledged".equals(e.get("state")), "state is " + e.get("state"));
                acked.add((String) e.get("recipient"));
            }
        }
        events.cancel(tag);
        events.queueDelete(eventsQueue);
        eventsQueue = null;
    }

    // ================================================================== AMQP submission

    /**
     * Submits the referral again, over AMQP this time, with a reply queue. RabbitMQ vouches
     * for user_id, and the broker takes the sending agency from it: if the operator mapped our
     * AMQP user to police, the answer is the original receipt (a duplicate delivers nothing
     * again); if our user is no agency's (guest in development), it is {@code unauthorized}.
     */
    private void submitOverAmqp(Agency police) throws Exception {
        String user = URI.create(amqpUrl).getUserInfo();
        user = user == null ? "guest" : URLDecoder.decode(user.split(":", 2)[0],
                StandardCharsets.UTF_8);
        Jwk brokerEnc = broker.encryptionKey();
        String jwe = Jose.encrypt(lastReferral.serialized.getBytes(
                StandardCharsets.US_ASCII), brokerEnc,
                Json.obj("kid", brokerEnc.kid, "cty", "masp+sd-jwt"));
        try (Amqp c = Amqp.connect(amqpUrl)) {
            String replyQueue = c.queueDeclare("", false, false, true, true, null);
            c.consume(replyQueue);
            c.confirmSelect();
            Amqp.Properties p = new Amqp.Properties();
            p.contentType = "application/jose";
            p.deliveryMode = 2;
            p.userId = user;
            p.replyTo = replyQueue;
            p.correlationId = UUID.randomUUID().toString();
            c.publish(ns + "masp.ingress", police.id, true, p,
                    jwe.getBytes(StandardCharsets.US_ASCII));
            Amqp.Message answer = null;
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (answer == null) {
                long left = deadline - System.currentTimeMillis();
                check(left > 0, "no answer on the reply queue");
                Amqp.Message m = c.nextDelivery(Math.min(left, 1000));
                if (m != null) {
                    c.ack(m.deliveryTag);
                    if (p.correlationId.equals(m.properties.correlationId)) {
                        answer = m;
                    }
                }
            }
            check("application/json".equals(answer.properties.contentType),
                    "answer content_type is " + answer.properties.contentType);
            Map<String, Object> a = Json.parseObject(answer.bodyText());
            if (a.containsKey("receipt")) {
                check(lastReceipt.equals(a.get("receipt")),
                        "the AMQP answer is not the original receipt");
                System.err.println("note: AMQP user " + user + " submits as police");
            } else {
                check("unauthorized".equals(a.get("code")) && Long.valueOf(401).equals(a.get("status")),
                        "AMQP submission as " + user + " refused with " + a);
                check(!a.containsKey("instance"), "an AMQP problem carries instance");
                System.err.println("note: AMQP user " + user + " is no agency's: unauthorized");
            }
        }
    }

    // ================================================================== 9. negative

    private void negativeChecks(Agency police, String caseId, Map<String, Object> suspect)
            throws Exception {
        // A mistyped purpose: 422 purpose-not-agreed, naming the claim and the purposes
        // that would do (every purpose is agreed for some police case_referral flow).
        Map<String, Object> env = envelope("police", "case_referral", caseId, "risk_managment");
        SdJwt.Issued bad = SdJwt.issue(env, referralBody(), List.of(suspect), null, police.sig,
                police.alg);
        Http.Response r = post(police, bad.serialized);
        check(r.status == 422 && "purpose-not-agreed".equals(r.problemCode())
                && "purpose".equals(r.json().get("claim")),
                "a mistyped purpose gave " + r);
        check(r.json().get("agreed_purposes") instanceof List
                && ((List<?>) r.json().get("agreed_purposes")).contains("risk_management"),
                "agreed_purposes is " + r.json().get("agreed_purposes"));

        // A real purpose, but agreed only for other flows: the same code, the flow's purposes.
        Map<String, Object> env2 = envelope("police", "consent_change", caseId, "risk_management");
        SdJwt.Issued bad2 = SdJwt.issue(env2, Json.obj(), List.of(suspect), "CONSENT-0001-V9",
                police.sig, police.alg);
        Http.Response r2 = post(police, bad2.serialized);
        check(r2.status == 422 && "purpose-not-agreed".equals(r2.problemCode()),
                "an unagreed purpose gave " + r2);
        check(List.of("case_management").equals(r2.json().get("agreed_purposes")),
                "agreed_purposes is " + r2.json().get("agreed_purposes"));

        // The same SD-JWT again, sealed afresh: the original receipt, byte for byte.
        Http.Response again = post(police, lastReferral.serialized);
        check(again.status == 202, "resubmission gave " + again);
        check(lastReceipt.equals(again.json().get("receipt")),
                "resubmission did not return the original receipt");
    }
}
