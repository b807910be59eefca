package ids

import (
	"strconv"
	"strings"
)

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func splitWorkerKey(k string) (string, int64) {
	pool, id, _ := strings.Cut(k, "\x00")
	n, _ := strconv.ParseInt(id, 10, 64)
	return pool, n
}
