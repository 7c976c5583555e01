package authd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"

	authd "authd.dev/client"
	"authd.dev/client/grpcauth"
	"authd.dev/client/httpauth"
	"google.golang.org/grpc"
)

func ExampleNew() {
	ca, err := os.ReadFile("/etc/authd/tls/ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	client, err := authd.New("authd.internal:50051",
		authd.WithTLS(&tls.Config{
			RootCAs:    roots,
			MinVersion: tls.VersionTLS12,
			// The workload certificate, read again at each handshake.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				cert, err := tls.LoadX509KeyPair("/run/spiffe/svid.pem", "/run/spiffe/svid.key")
				return &cert, err
			},
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	token, err := client.VerifyToken(context.Background(), "eyJ…", "read:orders")
	var authErr *authd.AuthError
	switch {
	case errors.As(err, &authErr) && authErr.Reason == authd.ReasonTokenExpired:
		fmt.Println("expired at", authErr.Metadata["expired_at"])
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(token.Subject)
	}
}

func ExampleClient_AwaitDeviceLogin() {
	client, err := authd.New("127.0.0.1:50051", authd.WithInsecure(), authd.WithoutCache())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	login, err := client.StartDeviceLogin(ctx, authd.DeviceLoginRequest{Scopes: []string{"read:orders"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Open %s and enter %s\n", login.VerificationURI, login.UserCode)
	session, err := client.AwaitDeviceLogin(ctx, login, "")
	if errors.Is(err, authd.ErrDeviceLoginDenied) {
		log.Fatal("denied")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed in as", session.Session.UserID)
}

func Example_netHTTP() {
	client, err := authd.New("127.0.0.1:50051", authd.WithInsecure(),
		authd.WithWatchToken(func() string { return os.Getenv("AUTHD_WATCH_TOKEN") }))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	authn := httpauth.New(client, httpauth.WithRealm("orders"))
	mux := http.NewServeMux()
	mux.Handle("GET /orders", authn.Require("read:orders")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := authd.FromContext(r.Context())
		fmt.Fprintf(w, "orders of %s\n", token.Subject)
	})))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

func Example_gRPCServer() {
	client, err := authd.New("127.0.0.1:50051", authd.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	authn := grpcauth.New(client,
		grpcauth.DefaultScopes("read:orders"),
		grpcauth.Require("/shop.v1.Orders/Cancel", "write:orders"),
		grpcauth.Public("/grpc.health.v1.Health/"))
	server := grpc.NewServer(grpc.UnaryInterceptor(authn.Unary()), grpc.StreamInterceptor(authn.Stream()))
	_ = server // register services, then server.Serve(listener)
}
