package masp.example;

import java.security.PublicKey;
import java.time.LocalDate;
import java.time.format.DateTimeFormatter;
import java.time.format.ResolverStyle;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Key discovery (docs/spec/keys.md): the broker's keys from {@code /.well-known/jwks.json},
 * fetched once and pinned for the run; the agencies' keys from {@code /v1/agency-keys}, used
 * only to verify agency-signed objects (a sender's SD-JWT). The two sets never mix: a
 * broker-signed object verifies only with a pinned broker key.
 */
public final class Keys {
    /** {@code agency "-" use "-" yyyymmdd ["-" n]} (jose-profile.md, "Key ids"). */
    private static final Pattern KID =
            Pattern.compile("^([a-z][a-z0-9_]{1,31})-(sig|enc)-([0-9]{8})(?:-([0-9]{1,3}))?$");
    private static final DateTimeFormatter YYYYMMDD =
            DateTimeFormatter.ofPattern("uuuuMMdd").withResolverStyle(ResolverStyle.STRICT);

    private Keys() {
    }

    /** The agency part of a kid, or null when the kid does not follow the grammar. */
    public static String agencyOfKid(String kid) {
        Matcher m = kid == null ? null : KID.matcher(kid);
        if (m == null || !m.matches()) {
            return null;
        }
        try {
            LocalDate.parse(m.group(3), YYYYMMDD); // a valid calendar date
        } catch (RuntimeException e) {
            return null;
        }
        return m.group(1);
    }

    static String useOfKid(String kid) {
        Matcher m = KID.matcher(kid);
        return m.matches() ? m.group(2) : null;
    }

    /** Orders kids by "newest usable": latest date, then highest -n. */
    static int compareKidAge(String a, String b) {
        Matcher x = KID.matcher(a);
        Matcher y = KID.matcher(b);
        x.matches();
        y.matches();
        int c = x.group(3).compareTo(y.group(3));
        if (c != 0) {
            return c;
        }
        int nx = x.group(4) == null ? -1 : Integer.parseInt(x.group(4));
        int ny = y.group(4) == null ? -1 : Integer.parseInt(y.group(4));
        return Integer.compare(nx, ny);
    }

    /** RFC 7638 thumbprint of an OKP key: SHA-256 over {"crv","kty","x"} in that order. */
    public static String thumbprint(Jwk k) throws Exception {
        String canonical = "{\"crv\":\"" + k.crv + "\",\"kty\":\"OKP\",\"x\":\"" + B64.encode(k.x)
                + "\"}";
        return B64.encode(Jose.sha256(canonical));
    }

    /** One published key, checked against keys.md's rules. */
    static final class Published {
        final Jwk jwk;
        final String use;
        final String status;
        final Long exp;
        final String owner;

        Published(Map<String, Object> j) {
            this.jwk = Jwk.fromJson(j);
            if (jwk.d != null) {
                throw new SecurityException("a published key has a private part");
            }
            this.use = Json.asString(j.get("use"), "use");
            this.status = Json.asString(j.get("status"), "status");
            this.owner = Json.asString(j.get("masp_agency"), "masp_agency");
            this.exp = j.get("exp") == null ? null : Json.asLong(j.get("exp"), "exp");
            String kidAgency = agencyOfKid(jwk.kid);
            if (kidAgency == null || !kidAgency.equals(owner) || !use.equals(useOfKid(jwk.kid))) {
                throw new SecurityException("key " + jwk.kid + " does not match its kid");
            }
            if (!jwk.crv.equals(use.equals("sig") ? "Ed25519" : "X25519")) {
                throw new SecurityException("key " + jwk.kid + " has the wrong curve for " + use);
            }
        }

        /** active, or retiring before its exp; retired and revoked never. */
        boolean usable(long now) {
            return status.equals("active") || (status.equals("retiring") && exp != null && now < exp);
        }
    }

    // ------------------------------------------------------------ the broker's keys

    /** The broker's keys, pinned for the run. */
    public static final class BrokerKeys {
        private final Map<String, Published> byKid = new LinkedHashMap<>();

        /**
         * Reads a JWKS from /.well-known/jwks.json. Every key must be the broker's. If
         * {@code expectedThumbprints} is given (kid=thumbprint pairs from the operator, out of
         * band), every usable key must be among them.
         */
        public BrokerKeys(Map<String, Object> jwks, Map<String, String> expectedThumbprints)
                throws Exception {
            for (Object o : Json.asArray(jwks.get("keys"), "keys")) {
                Published p = new Published(Json.asObject(o, "key"));
                if (!p.owner.equals("broker")) {
                    throw new SecurityException("jwks.json lists a key of " + p.owner);
                }
                if (expectedThumbprints != null && !expectedThumbprints.isEmpty()
                        && !p.status.equals("revoked") && !p.status.equals("retired")) {
                    String want = expectedThumbprints.get(p.jwk.kid);
                    if (want == null || !want.equals(thumbprint(p.jwk))) {
                        throw new SecurityException("broker key " + p.jwk.kid
                                + " does not match the pinned thumbprint");
                    }
                }
                byKid.put(p.jwk.kid, p);
            }
        }

        /** The pinned signing key named by a broker-signed object's kid, or an exception. */
        public PublicKey signingKey(String kid) throws Exception {
            Published p = byKid.get(kid);
            if (p == null || !p.use.equals("sig")) {
                throw new SecurityException("kid " + kid + " is not a pinned broker signing key");
            }
            if (!p.usable(System.currentTimeMillis() / 1000)) {
                throw new SecurityException("broker key " + kid + " is " + p.status);
            }
            return p.jwk.publicKey();
        }

        /** The broker's newest active encryption key: what submissions are sealed to. */
        public Jwk encryptionKey() {
            Published best = null;
            for (Published p : byKid.values()) {
                if (p.use.equals("enc") && p.status.equals("active")
                        && (best == null || compareKidAge(p.jwk.kid, best.jwk.kid) > 0)) {
                    best = p;
                }
            }
            if (best == null) {
                throw new SecurityException("the broker publishes no active encryption key");
            }
            return best.jwk;
        }

        public List<String> describe() throws Exception {
            List<String> out = new ArrayList<>();
            for (Published p : byKid.values()) {
                out.add(p.jwk.kid + " " + p.status + " " + thumbprint(p.jwk));
            }
            return out;
        }

        /**
         * Verifies a broker-signed JWS: the header (alg, kid, typ exactly as expected), a
         * pinned broker signing key, the signature, and {@code iss} = "broker".
         */
        public Jose.Parsed verify(String compact, String typ, String... acceptedAlgs)
                throws Exception {
            Jose.Parsed peek = Jose.peekJws(compact);
            Map<String, Object> h = peek.header;
            for (String refused : List.of("crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256")) {
                if (h.containsKey(refused)) {
                    throw new SecurityException("broker JWS header carries " + refused);
                }
            }
            if (!typ.equals(h.get("typ"))) {
                throw new SecurityException("typ is " + h.get("typ") + ", expected " + typ);
            }
            String kid = Json.asString(h.get("kid"), "kid");
            if (!"broker".equals(agencyOfKid(kid))) {
                throw new SecurityException("kid " + kid + " is not the broker's");
            }
            Jose.Parsed p = Jose.verify(compact, signingKey(kid), acceptedAlgs);
            if (!"broker".equals(p.payloadJson().get("iss"))) {
                throw new SecurityException("iss is not \"broker\"");
            }
            return p;
        }
    }

    // ------------------------------------------------------------ the agencies' keys

    /** The agencies' public keys from /v1/agency-keys. */
    public static final class AgencyKeys {
        private final Map<String, Published> byKid = new LinkedHashMap<>();

        public AgencyKeys(Map<String, Object> jwks) {
            for (Object o : Json.asArray(jwks.get("keys"), "keys")) {
                Published p = new Published(Json.asObject(o, "key"));
                if (p.owner.equals("broker")) {
                    throw new SecurityException("/v1/agency-keys lists a broker key");
                }
                byKid.put(p.jwk.kid, p);
            }
        }

        /** An agency's usable signing key by kid, or null. */
        public PublicKey signingKey(String kid) {
            Published p = byKid.get(kid);
            if (p == null || !p.use.equals("sig") || !p.usable(System.currentTimeMillis() / 1000)) {
                return null;
            }
            try {
                return p.jwk.publicKey();
            } catch (Exception e) {
                return null;
            }
        }

        public boolean has(String kid) {
            return byKid.containsKey(kid);
        }
    }
}
