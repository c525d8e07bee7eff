//! Value parsers of command-line flags: a bad value is refused while the
//! arguments are parsed (exit code 2, nothing called), with a message that
//! says what to write instead.

use crate::duration::HumanDuration;
use crate::metastudio::connection::{Connection, Credentials, parse_endpoint, regional_endpoint};

/// Any non-empty text (ids, robot ids, room ids).
pub fn non_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("it is empty: give the id".into())
    } else {
        Ok(value.to_owned())
    }
}

/// A validity in days, 0..=65535.
pub fn days(value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "write a whole number of days from 0 to 65535 (0 = permanent)".to_owned())
}

/// A duration longer than zero, e.g. a timeout.
pub fn positive_duration(value: &str) -> Result<HumanDuration, String> {
    let duration: HumanDuration = value.parse().map_err(|e| format!("{e}"))?;
    if duration.0.is_zero() {
        return Err("it must be longer than 0s, e.g. 30s".into());
    }
    Ok(duration)
}

/// A duration of zero or more (latencies).
pub fn duration(value: &str) -> Result<HumanDuration, String> {
    value.parse().map_err(|e| format!("{e}"))
}

/// The slowest and fastest client-side rates accepted, per second.
const RATE_RANGE: (f64, f64) = (0.001, 1_000_000.0);

/// Requests per second: 0 (no limit) or 0.001 to 1000000.
pub fn rate(value: &str) -> Result<f64, String> {
    let fix = || {
        format!(
            "write 0 (no limit) or a number of requests per second from {} to {}",
            RATE_RANGE.0, RATE_RANGE.1
        )
    };
    let rate: f64 = value.trim().parse().map_err(|_| fix())?;
    if rate == 0.0 || (RATE_RANGE.0..=RATE_RANGE.1).contains(&rate) {
        Ok(rate)
    } else {
        Err(fix())
    }
}

/// A tenant's budget rate (`--read-rate`, `--write-rate`): 0 (no limit) or
/// within the bounds a connection's `spec.budget` has
/// ([`crate::metastudio::pacing::RATE_RANGE`]).
pub fn budget_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.trim().parse().map_err(|_| {
        format!("`{value}` is not a number: write 0 (no limit) or a rate such as 2.5")
    })?;
    match crate::metastudio::pacing::rate_problem(rate) {
        None => Ok(rate),
        Some(problem) => Err(problem),
    }
}

/// A share of a quota: from 0.01 to 1.
pub fn share(value: &str) -> Result<f64, String> {
    let fix = || {
        "write a share from 0.01 to 1, e.g. 0.8 to leave a fifth of the quota to other clients"
            .to_owned()
    };
    let share: f64 = value.trim().parse().map_err(|_| fix())?;
    if (crate::metastudio::pacing::MIN_SHARE..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(fix())
    }
}

/// An endpoint URL: http or https, a host, no query.
pub fn endpoint(value: &str) -> Result<String, String> {
    parse_endpoint(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// A region name such as cn-north-4.
pub fn region(value: &str) -> Result<String, String> {
    regional_endpoint(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// The checks a connection makes on its project id and X-App-UserId.
fn check_connection(project_id: &str, app_user_id: Option<&str>) -> Result<(), String> {
    Connection::new(
        url_placeholder(),
        project_id,
        Credentials::ak_sk("", ""),
        app_user_id.map(str::to_owned),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn url_placeholder() -> reqwest::Url {
    reqwest::Url::parse("http://localhost").expect("static URL")
}

/// A project id: letters, digits, `-` and `_`.
pub fn project_id(value: &str) -> Result<String, String> {
    check_connection(value, None).map(|()| value.to_owned())
}

/// An X-App-UserId: printable ASCII.
pub fn app_user_id(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("it is empty: give an ASCII user id, or leave the flag out".into());
    }
    check_connection("p", Some(value)).map(|()| value.to_owned())
}

/// A Kubernetes namespace name.
pub fn namespace(value: &str) -> Result<String, String> {
    match crate::validate::dns_label_problem(value) {
        Some(why) => Err(format!("namespace {why}")),
        None => Ok(value.to_owned()),
    }
}

/// The name of a MetaStudioConnection or ClusterMetaStudioConnection (a
/// Kubernetes object name: an RFC 1123 subdomain). Anything else is
/// refused rather than escaped, so the name is always one safe path
/// segment of a broker URL.
pub fn connection_name(value: &str) -> Result<String, String> {
    let problem = crate::validate::dns_subdomain_problem(value).or_else(|| {
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let bad_label = value
            .split('.')
            .any(|label| !alnum(label.chars().next()) || !alnum(label.chars().last()));
        bad_label.then(|| {
            format!("`{value}` is not a valid name: each `.`-separated part must start and end with a letter or digit")
        })
    });
    match problem {
        Some(why) => Err(format!(
            "the connection name {why} (the metadata.name of a MetaStudioConnection or ClusterMetaStudioConnection)"
        )),
        None => Ok(value.to_owned()),
    }
}

/// A broker URL: https, or plain http to a loopback host only (the token
/// would travel unencrypted); no user info, query or fragment.
pub fn broker_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| {
        format!("{e}: write e.g. https://metastudio-operator-broker.metastudio-system.svc")
    })?;
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("plain http would send the ServiceAccount token unencrypted: use https (plain http is for a loopback broker only)".into()),
        other => return Err(format!("the scheme is {other}: use https")),
    }
    if host.is_empty() {
        return Err(
            "it has no host: write e.g. https://metastudio-operator-broker.metastudio-system.svc"
                .into(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "it holds user info: leave it out (the broker authenticates the ServiceAccount token)"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it has a query or fragment: give the broker's base URL only".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parser_refuses_with_the_fix() {
        assert_eq!(days("65535"), Ok(65535));
        assert!(days("65536").unwrap_err().contains("0 to 65535"));
        assert!(days("-1").is_err());
        assert!(
            positive_duration("0s")
                .unwrap_err()
                .contains("longer than 0s")
        );
        assert!(positive_duration("-1s").unwrap_err().contains("negative"));
        assert_eq!(rate("0"), Ok(0.0));
        assert_eq!(rate("20"), Ok(20.0));
        for bad in ["-5", "1e-300", "NaN", "inf", "x"] {
            assert!(rate(bad).unwrap_err().contains("no limit"), "{bad}");
            assert!(
                budget_rate(bad).unwrap_err().contains("0 (no limit)"),
                "{bad}"
            );
        }
        assert_eq!(budget_rate("0"), Ok(0.0));
        assert_eq!(budget_rate("1000"), Ok(1000.0));
        for bad in ["0.05", "1001"] {
            assert!(
                budget_rate(bad).unwrap_err().contains("from 0.1 to 1000"),
                "{bad}"
            );
        }
        assert!(endpoint("ftp://x").unwrap_err().contains("http or https"));
        assert!(region("CN North").is_err());
        assert!(project_id("p/../x").is_err());
        assert!(app_user_id("用户").unwrap_err().contains("ASCII"));
        assert_eq!(app_user_id("kiosk-1"), Ok("kiosk-1".into()));
        assert!(namespace("Bad NS").is_err());
        assert!(non_empty(" ").is_err());
    }

    #[test]
    fn connection_names_are_object_names_and_nothing_else() {
        for good in ["retail", "shared-account", "a.b-c.d", "0"] {
            assert_eq!(connection_name(good), Ok(good.to_owned()), "{good}");
        }
        for bad in [
            "", "..", ".", "../x", "a/b", "a..b", "a.-b", "Retail", "a%2Fb", "a b", "a?b", "a#b",
        ] {
            let err = connection_name(bad).unwrap_err();
            assert!(err.contains("MetaStudioConnection"), "{bad}: {err}");
        }
        assert!(
            connection_name(&"a".repeat(254))
                .unwrap_err()
                .contains("at most 253")
        );
    }

    #[test]
    fn broker_urls_are_https_or_loopback_http() {
        for good in [
            "https://metastudio-operator-broker.metastudio-system.svc",
            "https://broker.example:8443/prefix/",
            "http://127.0.0.1:8443",
            "http://[::1]:1",
            "http://localhost:9",
        ] {
            assert!(broker_url(good).is_ok(), "{good}");
        }
        let refused = [
            ("http://broker.metastudio-system.svc", "unencrypted"),
            ("ftp://x", "scheme is ftp"),
            ("https://user:pass@broker", "user info"),
            ("https://broker/?a=b", "query"),
            ("https://broker/#f", "fragment"),
            ("broker", "https://"),
        ];
        for (bad, why) in refused {
            let err = broker_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
