//! Session tokens: `v1.<expiry ms>.<hex HMAC-SHA256 over "v1|sid|expiry">`,
//! scoped to one session and checked when its client joins.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid for this session")]
    BadSignature,
}

#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { key: key.to_vec() }
    }

    fn mac(&self, session_id: &str, expires_at_ms: i64) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(format!("v1|{session_id}|{expires_at_ms}").as_bytes());
        mac
    }

    pub fn sign(&self, session_id: &str, expires_at_ms: i64) -> String {
        let tag = self.mac(session_id, expires_at_ms).finalize().into_bytes();
        format!("v1.{expires_at_ms}.{}", hex::encode(tag))
    }

    /// Checks the token's signature for `session_id` and its expiry.
    pub fn verify(&self, session_id: &str, token: &str, now_ms: i64) -> Result<(), Error> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(exp), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed);
        };
        let exp: i64 = exp.parse().map_err(|_| Error::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| Error::Malformed)?;
        self.mac(session_id, exp)
            .verify_slice(&tag)
            .map_err(|_| Error::BadSignature)?;
        if exp <= now_ms {
            return Err(Error::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_scoped_signed_and_expire() {
        let s = Signer::new(b"key");
        let t = s.sign("s1", 1000);
        assert_eq!(s.verify("s1", &t, 999), Ok(()));
        assert_eq!(s.verify("s1", &t, 1000), Err(Error::Expired));
        assert_eq!(s.verify("s2", &t, 0), Err(Error::BadSignature));
        assert_eq!(
            Signer::new(b"other").verify("s1", &t, 0),
            Err(Error::BadSignature)
        );
        let forged = t.replace("v1.1000.", "v1.9999.");
        assert_eq!(s.verify("s1", &forged, 0), Err(Error::BadSignature));
        for bad in ["", "v1", "v1.x.00", "v1.1.zz", "v2.1.00", "v1.1.00.00"] {
            assert_eq!(
                s.verify("s1", bad, 0).unwrap_err(),
                if bad == "v1.1.00" {
                    Error::BadSignature
                } else {
                    Error::Malformed
                },
                "{bad}"
            );
        }
    }
}
