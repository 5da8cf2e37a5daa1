//! The temporary key pair's key, generated here (ed25519 by default, RSA when
//! `temporary_key_pair_type` says so) so that only the public half is sent to EC2
//! (ImportKeyPair): the private key never crosses the network and never touches the disk.
//!
//! Why a crate (`ssh-key`) rather than `ssh-keygen`: the key stays in memory (a temporary file
//! would have to be protected and removed on every path, including a crash), and no external
//! program must be installed on the machine that runs imgbuild.

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::communicator::ssh::KeyPairType;

/// A generated key pair. `Debug` never shows the private key.
pub struct TempKey {
    /// OpenSSH private key text (zeroized on drop).
    private_openssh: zeroize::Zeroizing<String>,
    /// One `ssh-ed25519 AAAA... comment` line.
    pub public_openssh: String,
}

impl std::fmt::Debug for TempKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempKey")
            .field("public_openssh", &self.public_openssh)
            .field("private_openssh", &"<sensitive>")
            .finish()
    }
}

impl TempKey {
    pub fn private_openssh(&self) -> &str {
        &self.private_openssh
    }
}

/// Generates a key of `kind` (`bits` for RSA: 2048 unless 4096 is asked) with `comment`.
pub fn generate(kind: KeyPairType, bits: Option<u32>, comment: &str) -> Result<TempKey, String> {
    let mut key = match kind {
        KeyPairType::Ed25519 => {
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?
        }
        KeyPairType::Rsa => {
            let bits = match bits {
                None | Some(0) => 2048,
                Some(b) => b as usize,
            };
            let kp = ssh_key::private::RsaKeypair::random(&mut OsRng, bits)
                .map_err(|e| e.to_string())?;
            PrivateKey::from(kp)
        }
    };
    key.set_comment(comment);
    let private_openssh = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    let public_openssh = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    Ok(TempKey {
        private_openssh,
        public_openssh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_are_openssh_and_debug_hides_the_private_half() {
        let k = generate(KeyPairType::Ed25519, None, "packer_x").unwrap();
        assert!(k.public_openssh.starts_with("ssh-ed25519 AAAA"));
        assert!(k.public_openssh.ends_with(" packer_x"));
        assert!(k
            .private_openssh()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
        let again = generate(KeyPairType::Ed25519, None, "packer_x").unwrap();
        assert_ne!(again.public_openssh, k.public_openssh);
        // The private key parses back and matches the public one.
        let parsed = PrivateKey::from_openssh(k.private_openssh()).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), k.public_openssh);
    }

    #[test]
    fn rsa_keys_have_the_asked_size() {
        let k = generate(KeyPairType::Rsa, Some(2048), "c").unwrap();
        assert!(k.public_openssh.starts_with("ssh-rsa AAAA"));
        let parsed = PrivateKey::from_openssh(k.private_openssh()).unwrap();
        assert_eq!(parsed.algorithm(), Algorithm::Rsa { hash: None });
    }
}
