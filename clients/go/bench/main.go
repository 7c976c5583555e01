// Command bench measures a net/http route protected by authd.dev/client's
// middleware with a warm cache, beside the same route unprotected and beside
// auth0/go-jwt-middleware (local verification with a JWKS cache), with
// repeated and new tokens; then the delay from RevokeSession to the refusal
// through a warm cache (p50/p99). The app runs alone on the last core
// (GOMAXPROCS=1); the load, authd and the issuer share the others.
//
//	cd clients/go/bench && AUTHD_BIN=... go run . [-duration 5s] [-conns 32]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authd "authd.dev/client"
	"authd.dev/client/internal/testenv"
	"golang.org/x/sys/unix"
)

func main() {
	mode := flag.String("serve", "", "(internal) run the app in this mode")
	addr := flag.String("addr", "", "(internal) the app's address")
	duration := flag.Duration("duration", 5*time.Second, "each measurement")
	conns := flag.Int("conns", 32, "concurrent connections")
	newTokens := flag.Int("new-tokens", 3000, "tokens minted for each new-token run")
	revocations := flag.Int("revocations", 100, "sessions revoked for the delay")
	rounds := flag.Int("rounds", 3, "repeated-token runs of each route, alternating")
	modes := flag.String("modes", "unprotected,authd,go-jwt-middleware", "the routes to measure, unprotected first")
	flag.Parse()
	if *mode != "" {
		serve(*mode, *addr, os.Getenv("BENCH_AUTHD"), os.Getenv("BENCH_ISSUER"), testenv.Audience, os.Getenv("BENCH_WATCH_TOKEN"))
		return
	}
	// The load, authd and the issuer stay off the app's core.
	var others unix.CPUSet
	for cpu := 0; cpu < runtime.NumCPU()-1; cpu++ {
		others.Set(cpu)
	}
	if runtime.NumCPU() > 1 {
		if err := unix.SchedSetaffinity(0, &others); err != nil {
			log.Fatal(err)
		}
	}

	issuer, err := testenv.StartIssuer()
	if err != nil {
		log.Fatal(err)
	}
	defer issuer.Stop()
	dir, _ := os.MkdirTemp("", "authd-bench")
	defer os.RemoveAll(dir)
	a, err := testenv.StartAuthd(dir, issuer.SessionsConfig(""), "")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Kill()
	watchToken := must(issuer.Token(map[string]string{"permissions": "revocations:watch"}))

	repeated := mint(issuer, 64)
	fmt.Printf("authd.dev/client net/http benchmark: %d connections, %v per run, app on 1 core (GOMAXPROCS=1), %s\n\n",
		*conns, *duration, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| route | tokens | requests/s | × unprotected | p50 | p99 |")
	fmt.Println("|---|---|---:|---:|---:|---:|")
	// Every app runs at once (each idle while another is measured), and the
	// repeated-token runs alternate between them, rounds times: the machine
	// is shared, so the median of the rounds is reported, each round's
	// ratio below the table.
	names := strings.Split(*modes, ",")
	apps := map[string]*app{}
	for _, m := range names {
		apps[m] = startApp(m, a.Addr, issuer.URL, watchToken)
		defer apps[m].stop()
		load(apps[m].url, repeated, time.Second, *conns, true) // warm: keys fetched, cache filled
	}
	runs := map[string][]result{}
	for range *rounds {
		for _, m := range names {
			runs[m] = append(runs[m], load(apps[m].url, repeated, *duration, *conns, true))
		}
	}
	median := func(rs []result) result {
		sorted := slices.Clone(rs)
		slices.SortFunc(sorted, func(a, b result) int { return int(a.rate - b.rate) })
		return sorted[len(sorted)/2]
	}
	unprotected := median(runs[names[0]]).rate
	for _, m := range names {
		median(runs[m]).print(m, fmt.Sprintf("repeated (median of %d)", *rounds), unprotected)
		if m != names[0] && *newTokens > 0 {
			fresh := mint(issuer, *newTokens)
			n := load(apps[m].url, fresh, *duration, *conns, false)
			n.print(m, fmt.Sprintf("new (%d, each once)", n.requests), unprotected)
		}
	}
	fmt.Println()
	for i := range *rounds {
		fmt.Printf("round %d:", i+1)
		for _, m := range names[1:] {
			fmt.Printf(" %s %.2f×", m, runs[m][i].rate/runs[names[0]][i].rate)
		}
		fmt.Println()
	}
	if *revocations > 0 {
		revocationDelay(issuer, a.Addr, watchToken, *revocations)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

// mint makes n tokens holding read:orders, each with its own jti.
func mint(issuer *testenv.Issuer, n int) []string {
	out := make([]string, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				out[i] = must(issuer.Token(map[string]string{"scope": "read:orders", "jti": fmt.Sprintf("t-%d-%d", time.Now().UnixNano(), i)}))
			}
		}()
	}
	wg.Wait()
	return out
}

type app struct {
	url string
	cmd *exec.Cmd
}

func startApp(mode, authdAddr, issuerURL, watchToken string) *app {
	port := must(testenv.FreePort())
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(os.Args[0], "-serve", mode, "-addr", addr)
	cmd.Env = append(os.Environ(), "BENCH_AUTHD="+authdAddr, "BENCH_ISSUER="+issuerURL, "BENCH_WATCH_TOKEN="+watchToken)
	cmd.Stderr = os.Stderr
	stdout := must(cmd.StdoutPipe())
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "READY" {
		log.Fatalf("app %s: %q %v", mode, line, err)
	}
	if err := testenv.WaitForPort(addr, 10*time.Second); err != nil {
		log.Fatal(err)
	}
	return &app{url: "http://" + addr + "/orders", cmd: cmd}
}

func (a *app) stop() { _ = a.cmd.Process.Signal(syscall.SIGTERM); _ = a.cmd.Wait() }

type result struct {
	requests int
	rate     float64
	p50, p99 time.Duration
}

func (r result) print(route, tokens string, unprotected float64) {
	fmt.Printf("| %s | %s | %.0f | %.2f | %v | %v |\n", route, tokens, r.rate, r.rate/unprotected,
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
}

// load sends GET url with the tokens from conns keep-alive connections for
// d: cycling through them when cycle, else each once (stopping when they
// run out). The requests are written as prepared bytes and the answers read
// with no more parsing than their status and Content-Length, so that the
// load costs far less than the app it measures (net/http's client costs
// more than its server).
func load(url string, tokens []string, d time.Duration, conns int, cycle bool) result {
	hostPath := strings.TrimPrefix(url, "http://")
	host, path, _ := strings.Cut(hostPath, "/")
	requests := make([][]byte, len(tokens))
	for i, t := range tokens {
		requests[i] = []byte("GET /" + path + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + t + "\r\n\r\n")
	}
	var next atomic.Int64
	deadline := time.Now().Add(d)
	latencies := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	started := time.Now()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", host)
			if err != nil {
				log.Fatal(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if !cycle && i >= len(tokens) {
					return
				}
				t0 := time.Now()
				if _, err := conn.Write(requests[i%len(requests)]); err != nil {
					log.Fatal(err)
				}
				if status := readResponse(r); status != http.StatusOK {
					log.Fatalf("%s answered %d", url, status)
				}
				latencies[c] = append(latencies[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	all := slices.Concat(latencies...)
	slices.Sort(all)
	if len(all) == 0 {
		return result{}
	}
	return result{requests: len(all), rate: float64(len(all)) / elapsed.Seconds(),
		p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

// readResponse reads one HTTP/1.1 response with a Content-Length and
// answers its status.
func readResponse(r *bufio.Reader) int {
	status, length := 0, 0
	for first := true; ; first = false {
		line, err := r.ReadSlice('\n')
		if err != nil {
			log.Fatal(err)
		}
		text := strings.TrimRight(string(line), "\r\n")
		if first {
			fields := strings.Fields(text)
			if len(fields) < 2 {
				log.Fatalf("bad status line %q", text)
			}
			status, _ = strconv.Atoi(fields[1])
			continue
		}
		if text == "" {
			break
		}
		if name, value, ok := strings.Cut(text, ":"); ok && strings.EqualFold(name, "content-length") {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	if _, err := r.Discard(length); err != nil {
		log.Fatal(err)
	}
	return status
}

// revocationDelay: n sessions, each verified into a warm cache, then
// revoked; the delay is from the start of RevokeSession to the first
// refusal through the cache.
func revocationDelay(issuer *testenv.Issuer, authdAddr, watchToken string, n int) {
	ctx := context.Background()
	cached := must(authd.New(authdAddr, authd.WithInsecure(), authd.WithWatchToken(func() string { return watchToken })))
	defer cached.Close()
	revoker := must(authd.New(authdAddr, authd.WithInsecure(), authd.WithoutCache()))
	defer revoker.Close()
	for cached.CacheState() != authd.CacheAnswering {
		time.Sleep(10 * time.Millisecond)
	}
	var delays, afterReturn []time.Duration
	for i := range n {
		nonce := fmt.Sprintf("bench-%d", i)
		code, verifier := must2(issuer.Authorize("alice", nonce))
		s := must(revoker.CreateSession(ctx, authd.AuthorizationCode{Code: authd.Secret(code),
			RedirectURI: testenv.RedirectURI, CodeVerifier: authd.Secret(verifier), Nonce: nonce}, ""))
		token := s.AccessToken.Reveal()
		must(cached.VerifyToken(ctx, token))
		started := time.Now()
		returned := make(chan time.Time, 1)
		go func() { _, _ = revoker.RevokeSession(ctx, s.Handle); returned <- time.Now() }()
		for {
			if _, err := cached.VerifyToken(ctx, token); authd.ReasonOf(err) == authd.ReasonSessionRevoked {
				break
			}
			if time.Since(started) > 10*time.Second {
				log.Fatal("no refusal within 10 s")
			}
		}
		refused := time.Now()
		delays = append(delays, refused.Sub(started))
		afterReturn = append(afterReturn, max(0, refused.Sub(<-returned)))
	}
	pct := func(d []time.Duration, p int) time.Duration {
		slices.Sort(d)
		return d[len(d)*p/100].Round(time.Microsecond)
	}
	fmt.Printf("\nrevocation to refusal through a warm cache, %d sessions:\n", n)
	fmt.Printf("  from the start of RevokeSession (authd revokes at the issuer, stores, pushes): p50 %v, p99 %v\n",
		pct(delays, 50), pct(delays, 99))
	fmt.Printf("  after RevokeSession returned (0 when refused before): p50 %v, p99 %v\n",
		pct(afterReturn, 50), pct(afterReturn, 99))
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		log.Fatal(err)
	}
	return a, b
}
