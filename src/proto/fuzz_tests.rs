//! Property tests of the frame decoder: whatever text arrives, decoding
//! returns a request or an error answer, never panics, and an error that
//! echoes an id only does so for a frame whose id was readable.

use super::frames::{REQUEST_TYPES, decode_request};
use super::{ErrorCode, ServerFrame};
use proptest::prelude::*;

/// Valid frames to start mutations from.
const SEEDS: &[&str] = &[
    r#"{"type":"send","id":9,"conversation_id":"c1","client_msg_id":"0f1c","body":"hello","reply_to":null}"#,
    r#"{"type":"history","id":14,"conversation_id":"c1","after":40,"limit":200}"#,
    r#"{"type":"react","id":12,"conversation_id":"c1","client_msg_id":"z","target_seq":43,"emoji":"👍","remove":false}"#,
    r#"{"type":"sync","id":13,"cursors":{"c1":40}}"#,
    r#"{"type":"typing","conversation_id":"c1","active":true}"#,
    r#"{"type":"register","id":1,"username":"alice","password":"correct horse","device":"laptop"}"#,
];

fn check(text: &str) {
    match decode_request(text) {
        Ok((id, req)) => {
            assert!(REQUEST_TYPES.contains(&req.type_name()));
            assert!(id.is_some() || req.id_optional());
        }
        Err(e) => {
            assert!(!e.error.message.is_empty());
            if e.error.code == ErrorCode::BadFrame {
                // A bad frame never claims an id it could not trust, except
                // for a request type that needed one and had none.
                assert!(e.id.is_none());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        check(&text);
        let _ = ServerFrame::decode(&text);
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in 0..SEEDS.len(),
        cuts in proptest::collection::vec((0usize..200, 0usize..8, ".{0,4}"), 1..6),
    ) {
        let mut text = SEEDS[seed].to_string();
        for (at, len, insert) in cuts {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + len).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, &insert);
        }
        check(&text);
        let _ = ServerFrame::decode(&text);
    }

    #[test]
    fn any_json_value_gets_an_answer(
        ty in prop_oneof![Just("send".to_string()), Just("join".to_string()), "[a-z_]{0,12}"],
        id in prop_oneof![Just("1".to_string()), Just("-3".to_string()), Just("\"x\"".to_string()), Just("null".to_string()), Just("1e400".to_string())],
        field in "[a-z_]{1,16}",
        value in prop_oneof![Just("0".to_string()), Just("\"s\"".to_string()), Just("[]".to_string()), Just("{}".to_string()), Just("18446744073709551616".to_string())],
    ) {
        let text = format!(r#"{{"type":"{ty}","id":{id},"{field}":{value}}}"#);
        check(&text);
    }
}
