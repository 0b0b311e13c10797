package jetstream

import (
	"fmt"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// writtenHeaders are the headers a message OmniQ writes to a bucket (a
// state record, a registration, or the removal marker of either) can
// carry as stored, and those nats-server adds to a message it serves
// from a stream (a direct get's). No other header is ever on them.
var writtenHeaders = map[string]bool{
	// Stored: OmniQ's and nats.go's KV writes, and the server's markers.
	"Nats-Expected-Last-Subject-Sequence": true,
	"Nats-TTL":                            true,
	"KV-Operation":                        true,
	"Nats-Rollup":                         true,
	"Nats-Marker-Reason":                  true,
	// Added when served.
	"Nats-Stream":         true,
	"Nats-Subject":        true,
	"Nats-Sequence":       true,
	"Nats-Time-Stamp":     true,
	"Nats-Last-Sequence":  true,
	"Nats-Num-Pending":    true,
	"Nats-UpTo-Sequence":  true,
	"Nats-Pending-Msgs":   true,
	"Nats-Pending-Bytes":  true,
	"Nats-Last-Subject":   true,
	"Nats-Counter-Source": true,
}

// notWritten says why a message of stream, stored on subject, with
// headers h (as stored, or as the server served it) is not one an OmniQ
// client wrote there, or returns "". nats-server stores its answer to a
// request wherever the requester aimed its reply (docs/security.md,
// "Server answers go where the requester says"), and an operator may aim
// its direct gets at the buckets' keys: the answer to a get of a message
// of another stream (a task message, whose payload is anyone's to
// choose) is stored with that message's body, so it could hold any
// record or registration at all. Such a copy carries the headers the
// server served it with, naming the stream and subject it was copied
// from, and the copied message's own (a task's Nats-Msg-Id, a dead-letter
// entry's Omniq-* headers): OmniQ's own writes carry neither. A copy of
// the same key's message is not told apart: it holds what OmniQ wrote.
// served says h is a direct get's answer (see copiedFrom).
//
// A direct get may ask for no headers ("no_hdr"): the copy is then the
// other message's body alone. Every value OmniQ writes carries a header
// of its own, which such a copy lacks: a state write the revision it
// expects (Nats-Expected-Last-Subject-Sequence, 0 for a new key), a
// registration its TTL (Nats-TTL). Removal markers carry theirs
// (KV-Operation, Nats-Marker-Reason). A mirror of the bucket stores
// what it mirrors without its Nats-Expected-* headers, so a record a
// mirror serves may carry none: that one is not refused for it (a copy
// without headers written to the bucket then passes where its mirror
// answers; a runner reads from the bucket's leader).
func notWritten(h nats.Header, stream, subject string, served bool) string {
	for name := range h {
		if !writtenHeaders[name] {
			return fmt.Sprintf("it carries header %s, which no OmniQ write has: it is a copy of another message that nats-server stored there as its answer to a request (docs/security.md)", name)
		}
	}
	byMirror := false
	if vs := h["Nats-Stream"]; served && len(vs) > 0 {
		byMirror = vs[len(vs)-1] != stream
	}
	if !byMirror && entryOp(h) == natsjs.KeyValuePut && len(h[natsjs.ExpectedLastSubjSeqHeader]) == 0 && len(h[natsjs.MsgTTLHeader]) == 0 {
		return "it carries neither of the headers every OmniQ write of a value has (Nats-Expected-Last-Subject-Sequence, Nats-TTL): it is a copy of another message's body that nats-server stored there as its answer to a request (docs/security.md)"
	}
	return copiedFrom(h, stream, subject, served)
}

// copiedFrom says why a message of stream, stored on subject, with
// headers h is a copy of a message of another stream or subject that
// nats-server stored there as its answer to a request (see notWritten),
// or returns "". It looks only at the headers the server serves a
// message with, which OmniQ never writes itself: for messages whose
// other headers are anyone's (a dead-letter entry keeps its task's).
//
// served says h is a direct get's answer, whose last Nats-Stream value
// the server appended naming the stream that answered: stream itself,
// or a mirror of it with mirror_direct (as every KV mirror has: nats kv
// add --mirror), which answers stream's direct gets too. That value is
// not the message's; a copy's own Nats-Stream comes before it.
func copiedFrom(h nats.Header, stream, subject string, served bool) string {
	for name, values := range h {
		var want, what string
		switch name {
		case "Nats-Stream":
			want, what = stream, "stream"
			if served && len(values) > 0 {
				values = values[:len(values)-1]
			}
		case "Nats-Subject":
			want, what = subject, "subject"
		default:
			continue
		}
		for _, v := range values {
			if v != want {
				return fmt.Sprintf("it is a copy of a message of %s %q that nats-server stored there as its answer to a request (docs/security.md)", what, v)
			}
		}
	}
	return ""
}

// hiddenHeaders says why a message whose header block is raw bytes long
// and that nats.go read as h is not what an OmniQ client or nats-server
// wrote, or returns "". raw < 0 means the length is not known.
//
// nats.go stops reading a header block at its first blank line;
// nats-server does not. A client that writes the protocol itself can
// publish a message with a blank line among its headers (a task message,
// on a subject any submitter may use), and the server stores it whole,
// then serves it to a direct get with its own headers (Nats-Stream,
// Nats-Subject, ...) appended after that line, where nats.go does not see
// them. Stored as an operator's aimed answer on a bucket's key, such a
// copy showed readers only the headers before the blank line, all of
// them OmniQ's (an empty Nats-TTL passes for a TTL, and made-up
// Nats-Stream, Nats-Subject and Nats-Sequence for the server's): a forged
// "succeeded" record with the operator's result was taken for the
// task's (found by hand against omniq-runner). OmniQ's writes, and the
// headers nats-server adds, are "Name: value" lines and nothing else, so
// a block longer or shorter than those lines of h is not theirs.
func hiddenHeaders(h nats.Header, raw int) string {
	if raw < 0 {
		return ""
	}
	n := 0
	if len(h) > 0 || raw > 0 {
		n = len("NATS/1.0\r\n") + len("\r\n")
		for name, values := range h {
			for _, v := range values {
				n += len(name) + len(": ") + len(v) + len("\r\n")
			}
		}
	}
	if n != raw {
		return fmt.Sprintf("its header block is %d bytes where the headers read from it take %d: it holds more than those headers (a blank line, after which readers see nothing), so it is a copy of another message that nats-server stored there as its answer to a request (docs/security.md)", raw, n)
	}
	return ""
}

// headerLen is the length of the header block of m, a message as nats.go
// received it, or -1 when m was not received (its size is not the wire's).
func headerLen(m *nats.Msg) int {
	n := m.Size() - len(m.Subject) - len(m.Reply) - len(m.Data)
	if n < 0 {
		return -1
	}
	return n
}

// forgedReason is the reason a message of stream, stored on subject, with
// a header block raw bytes long that nats.go read as h, is not one OmniQ
// wrote (hiddenHeaders, then notWritten), or "".
func forgedReason(h nats.Header, raw int, stream, subject string, served bool) string {
	if why := hiddenHeaders(h, raw); why != "" {
		return why
	}
	return notWritten(h, stream, subject, served)
}
