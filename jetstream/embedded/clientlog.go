package embedded

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// How many lines about clients' connections (a denied publish or
// subscription, a failed login, a malformed protocol line) the embedded
// server logs: a burst, then a steady rate. nats-server logs each at error
// level, however fast a client causes them: a submitter publishing to a
// subject it may not use, 5,700 times a second, wrote 185 MB of the
// runner's log in 10 s (3 KB lines, naming a 3,000-byte subject), and a
// local user without credentials, logging in with a wrong password in a
// loop, 350 KB a second (atk21).
const (
	clientLogBurst = 200
	clientLogRate  = 50 // lines a second
)

// maxClientLine is the most of a line about a client that is logged: the
// rest is cut, saying how much. Such a line can quote what the client sent
// (a subject, or a JetStream API request's unknown field, up to the
// server's max_payload: one 30 KB field made each line 30 KB).
const maxClientLine = 2048

// clientLineMarks: one of them is in every line nats-server logs about a
// client's connection or request. A connection's lines name it
// ("127.0.0.1:47292 - cid:72 - …"); a JetStream API request that cannot be
// read is logged, naming what could not be read, without the client's
// name. Lines about the server itself, JetStream and its store have none
// and are never held back.
var clientLineMarks = []string{" - cid:", "Invalid JetStream request ", "Malformed JetStream API Request"}

// isClientLine reports whether a line nats-server logs is about a client's
// connection or request (clientLineMarks).
func isClientLine(line string) bool {
	for _, m := range clientLineMarks {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

// cutClientLine cuts line to maxClientLine bytes (at a rune boundary),
// saying how many it left out.
func cutClientLine(line string) string {
	if len(line) <= maxClientLine {
		return line
	}
	n := maxClientLine
	for n > 0 && !utf8.RuneStart(line[n]) {
		n--
	}
	return fmt.Sprintf("%s… (%d bytes more)", line[:n], len(line)-n)
}
