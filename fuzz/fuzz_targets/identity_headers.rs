//! The user and groups header readers (`proxy_trust::read_user`, `read_groups`), against a
//! model of SPEC §16: a value is taken exactly as sent (only spaces and tabs trimmed); one
//! header line each; a user is one clean name of at most 256 bytes; groups are at most 64
//! distinct, clean names within 4096 bytes; placeholders are refused.
//!
//! Input: the first byte holds the number of user header lines (low two bits) and of groups
//! header lines (next two bits); the rest, split on `\n`, gives the lines' raw bytes in that
//! order (lines that are not valid header values are skipped).

#![no_main]

use std::collections::HashSet;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_authd::proxy_trust::{
    IdentityError, MAX_GROUPS, MAX_GROUPS_BYTES, MAX_USER_LEN, is_invisible, is_placeholder,
    read_groups, read_user,
};

fuzz_target!(|data: &[u8]| {
    let Some((&counts, rest)) = data.split_first() else {
        return;
    };
    let (user_lines, group_lines) = (usize::from(counts & 3), usize::from((counts >> 2) & 3));
    let values: Vec<HeaderValue> = rest
        .split(|b| *b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    if values.len() < user_lines + group_lines {
        return;
    }
    let user = HeaderName::from_static("x-forwarded-user");
    let groups = HeaderName::from_static("x-forwarded-groups");
    let mut headers = HeaderMap::new();
    for value in &values[..user_lines] {
        headers.append(&user, value.clone());
    }
    for value in &values[user_lines..user_lines + group_lines] {
        headers.append(&groups, value.clone());
    }

    match read_user(&headers, &user) {
        Ok(name) => {
            assert_eq!(user_lines, 1, "a user read from {user_lines} lines");
            // Exactly the value sent, less the HTTP layer's own spaces and tabs.
            let sent = std::str::from_utf8(values[0].as_bytes()).expect("accepted ⇒ UTF-8");
            assert_eq!(name, sent.trim_matches([' ', '\t']));
            assert!(!name.is_empty() && name.len() <= MAX_USER_LEN);
            assert!(!name.contains(','));
            assert!(!is_placeholder(&name), "{name:?}");
            assert!(
                !name
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || is_invisible(c)),
                "{name:?}"
            );
        }
        Err(IdentityError::Missing) => assert_eq!(user_lines, 0),
        Err(IdentityError::Ambiguous) => {
            assert!(user_lines > 1 || values[0].as_bytes().contains(&b','));
        }
        Err(_) => assert_eq!(user_lines, 1),
    }

    match read_groups(&headers, &groups) {
        Ok(read) => {
            assert!(group_lines <= 1, "groups read from {group_lines} lines");
            assert!(read.len() <= MAX_GROUPS);
            let Some(line) = values.get(user_lines).filter(|_| group_lines == 1) else {
                assert!(read.is_empty());
                return;
            };
            assert!(line.len() <= MAX_GROUPS_BYTES);
            let text = std::str::from_utf8(line.as_bytes()).expect("accepted ⇒ UTF-8");
            // The model: split on commas, trim spaces and tabs, drop empty items, keep the
            // first of each name.
            let mut seen = HashSet::new();
            let model: Vec<&str> = text
                .split(',')
                .map(|g| g.trim_matches([' ', '\t']))
                .filter(|g| !g.is_empty() && seen.insert(*g))
                .collect();
            assert_eq!(read, model);
            for group in &read {
                assert!(!is_placeholder(group), "{group:?}");
                assert!(
                    !group.chars().any(|c| c.is_control()
                        || (c.is_whitespace() && c != ' ')
                        || is_invisible(c)),
                    "{group:?}"
                );
            }
            // What was read reads back the same (a proxy re-sending it changes nothing).
            let joined = read.join(",");
            let mut again = HeaderMap::new();
            again.insert(
                &groups,
                HeaderValue::from_bytes(joined.as_bytes()).expect("clean groups"),
            );
            assert_eq!(read_groups(&again, &groups), Ok(read));
        }
        Err(IdentityError::Missing) => panic!("an absent groups header is no groups"),
        Err(IdentityError::Ambiguous) => assert!(group_lines > 1),
        Err(_) => assert_eq!(group_lines, 1),
    }
});
