package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// DPoPKey is a client's ES256 DPoP key (RFC 9449).
type DPoPKey struct{ key *ecdsa.PrivateKey }

// NewDPoPKey draws a key.
func NewDPoPKey() (*DPoPKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &DPoPKey{k}, err
}

var b64 = base64.RawURLEncoding

func (k *DPoPKey) jwk() map[string]string {
	pub, _ := k.key.PublicKey.Bytes() // 0x04 || X || Y
	return map[string]string{"kty": "EC", "crv": "P-256", "x": b64.EncodeToString(pub[1:33]), "y": b64.EncodeToString(pub[33:])}
}

// Thumbprint is the RFC 7638 thumbprint of the public key: cnf.jkt.
func (k *DPoPKey) Thumbprint() string {
	j := k.jwk()
	canonical := fmt.Sprintf(`{"crv":"%s","kty":"%s","x":"%s","y":"%s"}`, j["crv"], j["kty"], j["x"], j["y"])
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:])
}

// CnfClaims is the issuer's claims knob binding a token to this key.
func (k *DPoPKey) CnfClaims() string {
	return fmt.Sprintf(`{"cnf":{"jkt":%q}}`, k.Thumbprint())
}

// Proof is a fresh DPoP proof for method and uri, bound to token (ath).
func (k *DPoPKey) Proof(method, uri, token string) (string, error) {
	header, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk()})
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	ath := sha256.Sum256([]byte(token))
	payload, _ := json.Marshal(map[string]any{
		"jti": b64.EncodeToString(jti), "htm": method, "htu": uri, "iat": time.Now().Unix(), "ath": b64.EncodeToString(ath[:]),
	})
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig), nil
}
