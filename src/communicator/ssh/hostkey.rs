//! Host key checking. Packer ignores host keys (it cannot know them: the instance is new). imgbuild
//! does the same by default and offers `ssh_host_key_fingerprint`: the SHA-256 fingerprint of the
//! host key, written as `ssh-keygen -lf` prints it (`SHA256:` and unpadded base64). When it is set,
//! a session whose host key has another fingerprint fails at once (a mismatch is not "not up yet").
//!
//! Where such a fingerprint comes from: cloud-init prints the instance's host key fingerprints to
//! the serial console between `-----BEGIN SSH HOST KEY FINGERPRINTS-----` and
//! `-----END SSH HOST KEY FINGERPRINTS-----` ([`console_fingerprints`] reads that block from EC2's
//! GetConsoleOutput text).

use std::fmt;
use std::str::FromStr;

/// A SHA-256 host key fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKeyFingerprint([u8; 32]);

impl HostKeyFingerprint {
    /// Parses `SHA256:<base64>` (padding `=` accepted, as some tools print it). Any other form is
    /// an error that says what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let Some(b64) = t.strip_prefix("SHA256:") else {
            return Err(format!(
                "\"{t}\" is not a SHA-256 fingerprint: expected `SHA256:` followed by base64, as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it (MD5 `xx:xx:...` fingerprints are not accepted)"
            ));
        };
        let unpadded = b64.trim_end_matches('=');
        match ssh_key::Fingerprint::from_str(&format!("SHA256:{unpadded}")) {
            Ok(ssh_key::Fingerprint::Sha256(bytes)) => Ok(HostKeyFingerprint(bytes)),
            _ => Err(format!(
                "\"{t}\" is not a SHA-256 fingerprint: the part after `SHA256:` must be 43 characters of base64 (32 bytes)"
            )),
        }
    }

    /// From the raw digest libssh2 gives (`host_key_hash(Sha256)`); `None` unless 32 bytes.
    pub fn from_digest(digest: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(digest).ok().map(HostKeyFingerprint)
    }
}

impl fmt::Display for HostKeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ssh_key::Fingerprint::Sha256(self.0).fmt(f)
    }
}

impl fmt::Debug for HostKeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostKeyFingerprint({self})")
    }
}

/// One fingerprint line of cloud-init's console block: the key type and the fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleFingerprint {
    /// `ED25519`, `ECDSA`, `RSA` (the last word of the line, without parentheses).
    pub key_type: String,
    pub fingerprint: HostKeyFingerprint,
}

/// The SHA-256 fingerprints in the last `-----BEGIN SSH HOST KEY FINGERPRINTS-----` block of a
/// console output (the last one: an instance that rebooted prints the block again, and the host
/// keys may have been regenerated). Lines look like
/// `ci-info: 256 SHA256:AbC... root@ip-10-0-0-1 (ED25519)` (the `ci-info:`/timestamp prefix
/// varies); MD5 lines and lines that do not parse are skipped. An unterminated block (the
/// console output was cut) gives nothing.
pub fn console_fingerprints(console: &str) -> Vec<ConsoleFingerprint> {
    const BEGIN: &str = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
    const END: &str = "-----END SSH HOST KEY FINGERPRINTS-----";
    let mut last = None;
    let mut current: Option<Vec<ConsoleFingerprint>> = None;
    for line in console.lines() {
        if line.contains(BEGIN) {
            current = Some(Vec::new());
            continue;
        }
        if line.contains(END) {
            if let Some(block) = current.take() {
                last = Some(block);
            }
            continue;
        }
        let Some(block) = current.as_mut() else {
            continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(fp) = words.iter().find_map(|w| {
            w.starts_with("SHA256:")
                .then(|| HostKeyFingerprint::parse(w).ok())?
        }) else {
            continue;
        };
        let key_type = words
            .last()
            .map(|w| w.trim_start_matches('(').trim_end_matches(')').to_string())
            .unwrap_or_default();
        block.push(ConsoleFingerprint {
            key_type,
            fingerprint: fp,
        });
    }
    last.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU";

    #[test]
    fn parses_what_ssh_keygen_prints_and_refuses_other_forms() {
        let f = HostKeyFingerprint::parse(FP).unwrap();
        assert_eq!(f.to_string(), FP);
        // Padded base64 and surrounding spaces are accepted and printed unpadded.
        let padded = HostKeyFingerprint::parse(&format!(" {FP}= ")).unwrap();
        assert_eq!(padded, f);
        for bad in [
            "0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU",
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "SHA256:short",
            "SHA256:",
            "sha256:0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU",
            "SHA256:0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU!",
        ] {
            let e = HostKeyFingerprint::parse(bad).unwrap_err();
            assert!(e.contains("is not a SHA-256 fingerprint"), "{bad}: {e}");
        }
    }

    #[test]
    fn digest_round_trip() {
        let f = HostKeyFingerprint::parse(FP).unwrap();
        assert_eq!(HostKeyFingerprint::from_digest(&f.0), Some(f.clone()));
        assert_eq!(HostKeyFingerprint::from_digest(&[0u8; 20]), None);
    }

    #[test]
    fn console_block_of_cloud_init() {
        let console = "\
[   12.3] cloud-init[1234]: Generating public/private ed25519 key pair.
<14>Nov 22 10:00:00 ec2: 
<14>Nov 22 10:00:00 ec2: #############################################################
<14>Nov 22 10:00:00 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Nov 22 10:00:00 ec2: 256 SHA256:XDgzelhbX+JAq5sA3B1tSCfY8D77TP669q3MKlz0Sbw root@ip-10-0-0-1 (ECDSA)
<14>Nov 22 10:00:00 ec2: 256 SHA256:0IApUJSuDKlhN7kY9ALQ3PS5KJ7+CYuEVpVQ359J8nU root@ip-10-0-0-1 (ED25519)
<14>Nov 22 10:00:00 ec2: 256 MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48 root@ip (ED25519)
<14>Nov 22 10:00:00 ec2: 3072 SHA256:not-base64 root@ip-10-0-0-1 (RSA)
<14>Nov 22 10:00:00 ec2: -----END SSH HOST KEY FINGERPRINTS-----
";
        let got = console_fingerprints(console);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].key_type, "ECDSA");
        assert_eq!(got[1].key_type, "ED25519");
        assert_eq!(got[1].fingerprint.to_string(), FP);
    }

    #[test]
    fn console_last_complete_block_wins_and_a_cut_block_gives_nothing() {
        let one = "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 SHA256:XDgzelhbX+JAq5sA3B1tSCfY8D77TP669q3MKlz0Sbw r (ED25519)\n-----END SSH HOST KEY FINGERPRINTS-----\n";
        let two = format!("{one}-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 {FP} r (ED25519)\n-----END SSH HOST KEY FINGERPRINTS-----\n");
        let got = console_fingerprints(&two);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].fingerprint.to_string(), FP);
        // Cut after BEGIN: only the earlier, complete block counts.
        let cut = format!("{one}-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 {FP} r (ED25519)\n");
        let got = console_fingerprints(&cut);
        assert_eq!(got.len(), 1);
        assert_ne!(got[0].fingerprint.to_string(), FP);
        assert!(console_fingerprints("no block here\n").is_empty());
        assert!(console_fingerprints("").is_empty());
    }
}
