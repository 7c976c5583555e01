module authd.dev/client/bench

go 1.26.0

replace authd.dev/client => ../

require (
	authd.dev/client v0.0.0-00010101000000-000000000000
	github.com/auth0/go-jwt-middleware/v2 v2.3.0
	golang.org/x/sys v0.50.0
)

require (
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261110000943-09e21b237f2c // indirect
	google.golang.org/grpc v1.85.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	gopkg.in/go-jose/go-jose.v2 v2.6.3 // indirect
)
