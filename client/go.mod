module github.com/concord-dev/concord/client

go 1.26.0

replace github.com/concord-dev/concord/api => ../api

require github.com/concord-dev/concord/api v0.0.0
