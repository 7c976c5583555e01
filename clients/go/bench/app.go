package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	authd "authd.dev/client"
	"authd.dev/client/httpauth"
	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/jwks"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	"golang.org/x/sys/unix"
)

// The app under load: GET /orders needing read:orders, on one core.

// scopeClaims is the custom claims go-jwt-middleware users write to check a
// scope.
type scopeClaims struct {
	Scope string `json:"scope"`
}

func (c *scopeClaims) Validate(context.Context) error { return nil }

func (c *scopeClaims) has(scope string) bool {
	for _, s := range strings.Fields(c.Scope) {
		if s == scope {
			return true
		}
	}
	return false
}

func orders(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("orders\n")) }

func serve(mode, addr, authdAddr, issuerURL, audience, watchToken string) {
	runtime.GOMAXPROCS(1)
	var one unix.CPUSet
	one.Set(runtime.NumCPU() - 1)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		log.Fatal(err)
	}
	var handler http.Handler
	switch mode {
	case "unprotected":
		handler = http.HandlerFunc(orders)
	case "authd":
		client, err := authd.New(authdAddr, authd.WithInsecure(), authd.WithWatchToken(func() string { return watchToken }))
		if err != nil {
			log.Fatal(err)
		}
		for client.CacheState() != authd.CacheAnswering {
			time.Sleep(10 * time.Millisecond)
		}
		handler = httpauth.New(client).Require("read:orders")(http.HandlerFunc(orders))
	case "go-jwt-middleware":
		issuer, err := url.Parse(issuerURL)
		if err != nil {
			log.Fatal(err)
		}
		provider := jwks.NewCachingProvider(issuer, 5*time.Minute)
		v, err := validator.New(provider.KeyFunc, validator.RS256, issuerURL, []string{audience},
			validator.WithCustomClaims(func() validator.CustomClaims { return &scopeClaims{} }))
		if err != nil {
			log.Fatal(err)
		}
		scoped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			claims := r.Context().Value(jwtmiddleware.ContextKey{}).(*validator.ValidatedClaims)
			if !claims.CustomClaims.(*scopeClaims).has("read:orders") {
				http.Error(w, "insufficient scope", http.StatusForbidden)
				return
			}
			orders(w, r)
		})
		handler = jwtmiddleware.New(v.ValidateToken).CheckJWT(scoped)
	default:
		log.Fatalf("unknown mode %q", mode)
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	if path := os.Getenv("BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path + "." + mode)
		if err != nil {
			log.Fatal(err)
		}
		_ = pprof.StartCPUProfile(f)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		go func() { <-stop; pprof.StopCPUProfile(); f.Close(); os.Exit(0) }()
	}
	fmt.Println("READY")
	os.Stdout.Sync()
	log.Fatal(http.Serve(listener, handler))
}
