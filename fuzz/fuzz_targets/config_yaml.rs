//! A config file's text (`lockstep::config::MemberConfig::load_text`): it
//! loads, or every problem says what and where.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lockstep::config::MemberConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match MemberConfig::load_text(Some((Path::new("config.yaml"), text)), &[], &[]) {
        Ok(config) => {
            let again = MemberConfig::load_text(Some((Path::new("config.yaml"), &config.to_yaml())), &[], &[]);
            assert_eq!(again.ok().as_ref(), Some(&config));
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
