package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// PKI is a test CA with a server certificate (DNS authd.test, IP
// 127.0.0.1) and a client certificate naming a SPIFFE id, as PEM files in
// a directory.
type PKI struct {
	CAFile, ServerCert, ServerKey string
	// Client is the client certificate, for tls.Config.Certificates.
	Client tls.Certificate
	// Roots trusts the CA.
	Roots *x509.CertPool
}

// NewPKI writes the files into dir; the client certificate names spiffeID.
func NewPKI(dir, spiffeID string) (*PKI, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "authd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage, edit func(*x509.Certificate)) ([]byte, []byte, error) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		edit(template)
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
	}
	serverCert, serverKey, err := leaf(2, x509.ExtKeyUsageServerAuth, func(c *x509.Certificate) {
		c.Subject.CommonName = "authd.test"
		c.DNSNames = []string{"authd.test"}
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	})
	if err != nil {
		return nil, err
	}
	id, err := url.Parse(spiffeID)
	if err != nil {
		return nil, err
	}
	clientCert, clientKey, err := leaf(3, x509.ExtKeyUsageClientAuth, func(c *x509.Certificate) { c.URIs = []*url.URL{id} })
	if err != nil {
		return nil, err
	}
	p := &PKI{
		CAFile: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server.key"),
		Roots: x509.NewCertPool(),
	}
	p.Roots.AddCert(ca)
	for file, body := range map[string][]byte{
		p.CAFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), p.ServerCert: serverCert, p.ServerKey: serverKey,
	} {
		if err := os.WriteFile(file, body, 0o600); err != nil {
			return nil, err
		}
	}
	if p.Client, err = tls.X509KeyPair(clientCert, clientKey); err != nil {
		return nil, err
	}
	return p, nil
}
