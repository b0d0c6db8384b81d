//! The JOSE structure and encoding: duplicates, `crit`, nesting, JWE and
//! non-canonical base64.

use super::*;

// ---------------------------------------------------------------------------
// JOSE structure and encoding
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_header_or_claim_members_are_refused() {
    let f = forge().await;
    let alg = f.header["alg"].as_str().expect("alg").to_string();
    let (_, other) = f.app.new_user().await;
    let other_sub = decode_segment(&other.access, 1)["sub"].clone();
    let claims = f.claims.to_string();
    let header = f.header.to_string();
    let payloads = [
        (
            "sub twice, same value",
            append_raw_member(&f.claims, "sub", &f.claims["sub"].to_string()),
        ),
        (
            "sub twice, then another user's",
            append_raw_member(&f.claims, "sub", &other_sub.to_string()),
        ),
        (
            "exp twice, then one long past",
            append_raw_member(&f.claims, "exp", "1"),
        ),
        (
            "sid twice, same value",
            append_raw_member(&f.claims, "sid", &f.claims["sid"].to_string()),
        ),
    ];
    for (case, payload) in payloads {
        let token = f.app.sign_raw(header.as_bytes(), payload.as_bytes()).await;
        assert_refused(&f.app, &token, &format!("payload: {case}")).await;
    }
    let headers = [
        (
            "alg twice, same value",
            append_raw_member(&f.header, "alg", &json!(alg).to_string()),
        ),
        (
            "alg twice, then none",
            append_raw_member(&f.header, "alg", "\"none\""),
        ),
        (
            "alg none, then ours",
            append_raw_member(
                &f.header_with("alg", json!("none")),
                "alg",
                &json!(alg).to_string(),
            ),
        ),
        (
            "typ twice, same value",
            append_raw_member(&f.header, "typ", "\"at+jwt\""),
        ),
        (
            "kid twice, same value",
            append_raw_member(&f.header, "kid", &json!(f.kid()).to_string()),
        ),
    ];
    for (case, header) in headers {
        let token = f.app.sign_raw(header.as_bytes(), claims.as_bytes()).await;
        assert_refused(&f.app, &token, &format!("header: {case}")).await;
    }
    let control = f.app.sign_raw(header.as_bytes(), claims.as_bytes()).await;
    assert_accepted(
        &f.app,
        &control,
        "control: the same texts without duplicates",
    )
    .await;
}

#[tokio::test]
async fn crit_header_is_refused_whatever_it_lists() {
    let f = forge().await;
    assert_accepted(&f.app, &f.valid().await, "control").await;
    let mut unknown = f.header_with("crit", json!(["x-unknown"]));
    unknown["x-unknown"] = json!(true);
    let mut b64_false = f.header_with("crit", json!(["b64"]));
    b64_false["b64"] = json!(false);
    let cases = [
        (
            "crit [\"x-unknown\"]",
            f.header_with("crit", json!(["x-unknown"])),
        ),
        ("crit [\"x-unknown\"] with the member present", unknown),
        ("crit []", f.header_with("crit", json!([]))),
        ("crit [\"exp\"]", f.header_with("crit", json!(["exp"]))),
        ("crit [\"b64\"] with b64 false", b64_false),
    ];
    for (case, header) in cases {
        let token = f.sign(&header, &f.claims).await;
        assert_refused(&f.app, &token, case).await;
    }
}

#[tokio::test]
async fn nested_jwt_is_refused() {
    let f = forge().await;
    let inner = f.valid().await;
    assert_accepted(&f.app, &inner, "control: the inner token alone").await;
    let cty = f.header_with("cty", json!("JWT"));
    let cases = [
        (
            "cty JWT over ordinary claims",
            f.sign(&cty, &f.claims).await,
        ),
        (
            "cty JWT over a valid inner token",
            f.app
                .sign_raw(cty.to_string().as_bytes(), inner.as_bytes())
                .await,
        ),
        (
            "a valid token as the payload without cty",
            f.app
                .sign_raw(f.header.to_string().as_bytes(), inner.as_bytes())
                .await,
        ),
    ];
    for (case, token) in cases {
        assert_refused(&f.app, &token, case).await;
    }
}

#[tokio::test]
async fn jwe_is_refused_quickly_without_decryption() {
    let f = forge().await;
    let kid = f.kid().to_string();
    let headers = [
        (
            "PBES2 with p2c 2147483647 and zip DEF",
            json!({"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2c": 2147483647u32, "p2s": "AAAAAAAAAAAAAAAAAAAAAA", "zip": "DEF", "kid": kid, "typ": "at+jwt"}),
        ),
        (
            "dir with zip DEF",
            json!({"alg": "dir", "enc": "A256GCM", "zip": "DEF", "kid": kid, "typ": "at+jwt"}),
        ),
        (
            "RSA-OAEP-256 with cty JWT",
            json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": kid}),
        ),
    ];
    // A DEFLATE stream of stored/fixed blocks that would expand if inflated.
    let bomb = [
        &[0xED, 0xC1, 0x01, 0x0D, 0x00, 0x00, 0x00, 0xC2, 0xA0][..],
        &[0u8; 512][..],
    ]
    .concat();
    for (case, header) in headers {
        let token = format!(
            "{}.{}.{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(&[7u8; 40]),
            b64(&[1u8; 12]),
            b64(&bomb),
            b64(&[2u8; 16])
        );
        assert_refused_within(&f.app, &token, JWE_LIMIT, &format!("5-segment JWE: {case}")).await;
    }
}

/// Flips the lowest of the unused trailing bits of a base64url text whose
/// decoded length leaves some (as a 64-byte signature does).
fn non_canonical(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *text.as_bytes().last().expect("text");
    let index = ALPHABET
        .iter()
        .position(|&c| c == last)
        .expect("base64url char");
    let changed = ALPHABET[index | 1] as char;
    format!("{}{changed}", &text[..text.len() - 1])
}

/// A valid token whose chosen segment (1 payload, 2 signature) uses a
/// character that differs between base64url and standard base64.
async fn token_with_url_safe_chars(f: &Forge, segment: usize) -> (String, Value) {
    for i in 0..500 {
        let claims = f.claims_with("jti", json!(format!("jti-{i}-~~~>>>???")));
        let token = f.sign(&f.header, &claims).await;
        if token
            .split('.')
            .nth(segment)
            .expect("segment")
            .contains(['-', '_'])
        {
            return (token, claims);
        }
    }
    panic!("no token with '-' or '_' in segment {segment}");
}

#[tokio::test]
async fn non_canonical_encodings_are_refused() {
    let f = forge().await;
    let valid = f.valid().await;
    assert_accepted(&f.app, &valid, "control").await;
    let (h, p, s) = segments(&valid);
    let claims_text = f.claims.to_string();
    assert_accepted(
        &f.app,
        &f.signed_segments(&h, &p).await,
        "control: signing arbitrary input",
    )
    .await;

    let mut cases: Vec<(&str, String)> = Vec::new();
    // Padding: the signing input carries the '=' so a lenient decoder would verify.
    let padded_claims = (0..3)
        .map(|n| {
            f.claims_with("jti", json!(format!("jti{}", "x".repeat(n))))
                .to_string()
        })
        .find(|text| text.len() % 3 != 0)
        .expect("a payload length that needs padding");
    cases.push((
        "'=' padding on the payload",
        f.signed_segments(&h, &URL_SAFE.encode(&padded_claims))
            .await,
    ));
    assert!(s.len() % 4 != 0, "a 64-byte signature needs padding");
    cases.push((
        "'=' padding on the signature",
        format!("{valid}{}", "=".repeat(4 - s.len() % 4)),
    ));
    // Standard alphabet.
    let (_, dashed_claims) = token_with_url_safe_chars(&f, 1).await;
    let std_payload = STANDARD_NO_PAD.encode(dashed_claims.to_string());
    assert!(
        std_payload.contains(['+', '/']),
        "payload in the standard alphabet"
    );
    cases.push((
        "'+' or '/' in the payload",
        f.signed_segments(&h, &std_payload).await,
    ));
    let (dashed, _) = token_with_url_safe_chars(&f, 2).await;
    assert_accepted(
        &f.app,
        &dashed,
        "control: token with '-' or '_' in its signature",
    )
    .await;
    let (dh, dp, ds) = segments(&dashed);
    cases.push((
        "'+' or '/' in the signature",
        format!("{dh}.{dp}.{}", ds.replace('-', "+").replace('_', "/")),
    ));
    // Whitespace inside segments, signed as sent.
    let mid = p.len() / 2;
    let spaced = format!("{} {}", &p[..mid], &p[mid..]);
    cases.push((
        "a space inside the payload",
        f.signed_segments(&h, &spaced).await,
    ));
    let tabbed = format!("{}\t{}", &p[..mid], &p[mid..]);
    cases.push((
        "a tab inside the payload",
        f.signed_segments(&h, &tabbed).await,
    ));
    cases.push((
        "a space inside the signature",
        format!("{h}.{p}.{} {}", &s[..40], &s[40..]),
    ));
    // Non-canonical trailing bits.
    cases.push((
        "non-canonical trailing bits in the signature",
        format!("{h}.{p}.{}", non_canonical(&s)),
    ));
    // JSON that is not a UTF-8 object.
    let header_text = f.header.to_string();
    let bom = |text: &str| [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
    cases.push((
        "BOM before the payload JSON",
        f.app
            .sign_raw(header_text.as_bytes(), &bom(&claims_text))
            .await,
    ));
    cases.push((
        "BOM before the header JSON",
        f.app
            .sign_raw(&bom(&header_text), claims_text.as_bytes())
            .await,
    ));
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(claims_text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    cases.push((
        "UTF-16LE payload JSON",
        f.app.sign_raw(header_text.as_bytes(), &utf16).await,
    ));
    cases.push((
        "payload []",
        f.app.sign_raw(header_text.as_bytes(), b"[]").await,
    ));
    cases.push((
        "payload a JSON string",
        f.app.sign_raw(header_text.as_bytes(), b"\"claims\"").await,
    ));
    for (case, token) in &cases {
        assert_refused(&f.app, token, case).await;
    }
}
