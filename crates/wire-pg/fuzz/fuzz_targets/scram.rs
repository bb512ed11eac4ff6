#![no_main]
use libfuzzer_sys::fuzz_target;
use taskgate_wire_pg::scram;

// A fixed, valid verifier; the fuzzer drives both client messages.
const VERIFIER: &str = "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (first, last) = data.split_at(split);
    let Ok(verifier) = scram::Verifier::parse(VERIFIER) else { return };
    // Both mechanisms, with a binding offered (the first byte picks).
    let plus = data.first().is_some_and(|b| b & 1 == 1);
    let mechanism = if plus { scram::MECHANISM_PLUS } else { scram::MECHANISM };
    let binding = scram::Binding::EndPoint(b"certificate-hash");
    if let Ok((exchange, _)) = scram::start(verifier, mechanism, binding, first, "nonce") {
        let _ = exchange.finish(last.get(1..).unwrap_or_default());
    }
    let _ = scram::Verifier::parse(&String::from_utf8_lossy(data));
});
