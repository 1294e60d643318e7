//! Any text as a config file: parsing and validation give a value or a one-line error, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/nonexistent/fuzz.toml");
    if let Ok(mut cfg) = irqlab::config::VmConfig::from_toml(path, text) {
        let _ = cfg.apply(&irqlab::config::Overrides::default());
    } else if let Err(e) = irqlab::config::VmConfig::from_toml(path, text) {
        let line = e.to_string();
        assert!(!line.is_empty());
    }
});
