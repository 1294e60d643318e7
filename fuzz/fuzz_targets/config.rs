//! Any text as a config file: parsing and validation give a value or a one-line error, never
//! a panic.
#![no_main]

use irqlab::config::ConfigLayer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/nonexistent/fuzz.toml");
    let validated = ConfigLayer::from_toml(path, text)
        .and_then(|file| file.then(ConfigLayer::default()).validate());
    if let Err(e) = validated {
        assert!(!e.to_string().is_empty());
    }
});
