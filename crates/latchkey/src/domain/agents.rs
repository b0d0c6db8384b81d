//! Devices as people read them: "Chrome 156 on Linux" from a `User-Agent`
//! header, for session and event lists (the raw header is kept alongside).

use woothee::parser::Parser;
use woothee::woothee::VALUE_UNKNOWN;

/// A short name for the browser or app and its system, or `None` when the
/// header says nothing recognisable.
pub fn device_name(user_agent: &str) -> Option<String> {
    let found = Parser::new().parse(user_agent)?;
    let known = |s: &str| !s.is_empty() && s != VALUE_UNKNOWN;
    if !known(found.name) {
        return None;
    }
    let major = found.version.split('.').next().filter(|v| known(v));
    let app = match major {
        Some(v) => format!("{} {v}", found.name),
        None => found.name.to_string(),
    };
    Some(match known(found.os) && found.os != found.name {
        true => format!("{app} on {}", found.os),
        false => app,
    })
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn browsers_and_systems_are_named_as_people_read_them() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
                "Chrome 156 on Linux",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                "Safari 17 on Mac OSX",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox 128 on Windows 10",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Safari 17 on iPhone",
            ),
        ];
        for (agent, name) in cases {
            assert_eq!(device_name(agent).as_deref(), Some(name), "{agent}");
        }
        let headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";
        assert_eq!(
            device_name(headless).as_deref(),
            Some("Chrome 131 on Linux")
        );
        assert_eq!(device_name("reqwest/0.13"), None);
        assert_eq!(device_name(""), None);
    }
}
