//! NATS credentials files (`nsc generate creds`): the one parser the services and `tlm` use.

use std::sync::Arc;

/// `opts` authenticating with the NATS credentials file at `path`: a user JWT and its NKey
/// seed, as `nsc generate creds` writes it. The services and `tlm` both read credentials
/// files with it. Err: why the file cannot be used.
pub fn with_credentials_file(
    opts: async_nats::ConnectOptions,
    path: &std::path::Path,
) -> Result<async_nats::ConnectOptions, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (jwt, key) = user_credentials(&text)?;
    let key = Arc::new(key);
    Ok(opts.jwt(jwt, move |nonce| {
        let key = key.clone();
        async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
    }))
}

/// The user JWT and key pair of a credentials file as `nsc generate creds` writes it: two
/// blocks, each a `-----BEGIN ...-----` line, one line of text and a `------END ...------`
/// line, the JWT first and the user's NKey seed second; any other line is ignored.
///
/// (async-nats has a parser too, but it is built on the regex crate, which would add about
/// 400 KiB of code to every service for this one file.)
fn user_credentials(text: &str) -> Result<(String, nkeys::KeyPair), String> {
    let dashes = |l: &str| l.len() >= 6 && l.starts_with("---") && l.ends_with("---");
    let token = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'='))
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let blocks: Vec<&str> = lines
        .windows(3)
        .filter(|w| dashes(w[0]) && token(w[1]) && dashes(w[2]))
        .map(|w| w[1])
        .collect();
    let (jwt, seed) = match blocks[..] {
        [jwt, seed, ..] => (jwt, seed),
        [_] => return Err("it holds a user JWT but no NKey seed block (-----BEGIN USER NKEY SEED-----)".into()),
        [] => return Err("it holds no user JWT block (-----BEGIN NATS USER JWT-----)".into()),
    };
    let key = nkeys::KeyPair::from_seed(seed).map_err(|e| format!("its NKey seed is not valid: {e}"))?;
    Ok((jwt.to_string(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_format() {
        // A user made for this test; the text as `nsc generate creds` lays it out, banner
        // included, with CRLF line ends.
        let user = nkeys::KeyPair::new_user();
        let seed = user.seed().unwrap();
        let seed = seed.as_str();
        let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVIn0.c2ln";
        let text = format!(
            "-----BEGIN NATS USER JWT-----\r\n{jwt}\r\n------END NATS USER JWT------\r\n\r\n\
             ************************* IMPORTANT *************************\r\n\
             NKEY Seed printed below can be used to sign and prove identity.\r\n\
             NKEYs are sensitive and should be treated as secrets.\r\n\r\n\
             -----BEGIN USER NKEY SEED-----\r\n{seed}\r\n------END USER NKEY SEED------\r\n\r\n\
             *************************************************************\r\n"
        );
        let (got_jwt, key) = user_credentials(&text).unwrap();
        assert_eq!(got_jwt, jwt);
        assert_eq!(key.public_key(), user.public_key());

        let only_jwt = format!("-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n");
        let e = user_credentials(&only_jwt).err().unwrap();
        assert!(e.contains("no NKey seed block"), "{e}");
        let e = user_credentials("not a credentials file\n").err().unwrap();
        assert!(e.contains("no user JWT block"), "{e}");
        let bad_seed = text.replace(seed, "SUAINVALIDSEED");
        let e = user_credentials(&bad_seed).err().unwrap();
        assert!(e.contains("NKey seed is not valid"), "{e}");
    }
}
