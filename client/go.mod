module github.com/concord-dev/concord/client

go 1.26.0

replace github.com/concord-dev/concord/api => ../api

require (
	connectrpc.com/connect v1.21.1
	github.com/concord-dev/concord/api v0.0.0
	github.com/stretchr/testify v1.12.1
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/planetscale/vtprotobuf v0.6.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
