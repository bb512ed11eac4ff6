#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use taskgate_wire_pg::{Direction, Limits, frame, frontend};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let limits = Limits { max_message_bytes: 1 << 20 };
    while let Ok(Some(f)) = frame::decode(&mut buf, Direction::Frontend, &limits) {
        let _ = frontend::decode(&f);
    }
});
