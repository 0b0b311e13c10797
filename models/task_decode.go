package models

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeTaskJSON sets *t to the Task that json.Unmarshal(b, &fresh) decodes
// into a fresh zero Task, and returns the error json.Unmarshal returns
// (encoding/json's own error). Whatever *t held before is overwritten, not
// merged into.
//
// Records as AppendJSON or encoding/json write them (keys in struct order,
// no whitespace, no nulls, each key once) are decoded without reflection;
// tracebacks and messages with escapes stay on that path. Any other input
// (whitespace, unknown or differently-cased keys, repeated keys, nulls,
// numbers an int cannot hold, invalid JSON, trailing bytes) is handed to
// encoding/json whole, so its semantics hold byte for byte.
func DecodeTaskJSON(b []byte, t *Task) error {
	*t = Task{}
	d := taskDecoder{b: b}
	if d.task(t) && d.i == len(b) {
		return nil
	}
	*t = Task{}
	return json.Unmarshal(b, t) // its messages name Task: Task has no UnmarshalJSON
}

// taskDecoder reads the shape of a Task record that AppendJSON writes. Each
// method returns false on anything it is not sure of; DecodeTaskJSON then
// starts over with encoding/json.
type taskDecoder struct {
	b       []byte
	i       int
	scratch []byte // unquoted strings, reused
}

// The keys of each struct in field order. A record's keys must come in this
// order, each at most once, spelled exactly so.
var (
	taskKeys = [...]string{"schema_version", "id", "function", "status", "attempt", "retry_count", "max_retries",
		"interruptions", "replays", "quarantine_waits", "plugin_crashes", "shared_crashes", "timeout", "runner", "claim_sequence",
		"claim_delivery", "claim_stream", "created_at", "run_at", "started_at", "finished_at", "updated_at",
		"progress", "result", "error", "errors", "errors_dropped", "quarantined_until"}
	progressKeys  = [...]string{"fraction", "message", "updated_at"}
	taskErrorKeys = [...]string{"error_type", "message", "timestamp", "traceback", "retry_count", "is_retryable"}
)

func (d *taskDecoder) task(t *Task) bool {
	return d.object(taskKeys[:], func(k int) bool {
		switch k {
		case 0:
			return d.int(&t.SchemaVersion)
		case 1:
			return d.str(&t.ID)
		case 2:
			return d.str(&t.Function)
		case 3:
			return d.status(&t.Status)
		case 4:
			return d.int(&t.Attempt)
		case 5:
			return d.int(&t.RetryCount)
		case 6:
			return d.int(&t.MaxRetries)
		case 7:
			return d.int(&t.Interruptions)
		case 8:
			return d.int(&t.Replays)
		case 9:
			return d.int(&t.QuarantineWaits)
		case 10:
			return d.int(&t.PluginCrashes)
		case 11:
			return d.int(&t.SharedCrashes)
		case 12:
			tok, ok := d.plainToken()
			return ok && t.Timeout.UnmarshalJSON(tok) == nil
		case 13:
			return d.str(&t.Runner)
		case 14:
			return d.uint(&t.ClaimSequence)
		case 15:
			return d.uint(&t.ClaimDelivery)
		case 16:
			return d.str(&t.ClaimStream)
		case 17:
			return d.time(&t.CreatedAt)
		case 18:
			return d.time(&t.RunAt)
		case 19:
			return d.time(&t.StartedAt)
		case 20:
			return d.time(&t.FinishedAt)
		case 21:
			return d.time(&t.UpdatedAt)
		case 22:
			t.Progress = new(Progress)
			return d.progress(t.Progress)
		case 23:
			return d.bytes(&t.Result)
		case 24:
			t.Error = new(TaskError)
			return d.taskError(t.Error)
		case 25:
			return d.taskErrors(&t.Errors)
		case 26:
			return d.int(&t.ErrorsDropped)
		default:
			return d.time(&t.QuarantinedUntil)
		}
	})
}

func (d *taskDecoder) progress(p *Progress) bool {
	return d.object(progressKeys[:], func(k int) bool {
		switch k {
		case 0:
			return d.float(&p.Fraction)
		case 1:
			return d.str(&p.Message)
		default:
			return d.time(&p.UpdatedAt)
		}
	})
}

func (d *taskDecoder) taskError(e *TaskError) bool {
	return d.object(taskErrorKeys[:], func(k int) bool {
		switch k {
		case 0:
			return d.str(&e.ErrorType)
		case 1:
			return d.str(&e.Message)
		case 2:
			return d.time(&e.Timestamp)
		case 3:
			return d.str(&e.Traceback)
		case 4:
			return d.int(&e.RetryCount)
		default:
			return d.bool(&e.IsRetryable)
		}
	})
}

// taskErrors reads an array of TaskError objects; [] is an empty, non-nil
// slice, as encoding/json makes it.
func (d *taskDecoder) taskErrors(es *[]TaskError) bool {
	if !d.byte('[') {
		return false
	}
	*es = []TaskError{}
	if d.byte(']') {
		return true
	}
	for {
		*es = append(*es, TaskError{})
		if !d.taskError(&(*es)[len(*es)-1]) {
			return false
		}
		if !d.byte(',') {
			return d.byte(']')
		}
	}
}

// object reads an object whose keys are a subsequence of keys, calling value
// with each key's index to read its value.
func (d *taskDecoder) object(keys []string, value func(k int) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	next := 0
	for {
		if !d.byte('"') {
			return false
		}
		// A key with an escape or any other spelling matches none of keys
		// (which hold no quote or backslash): encoding/json decides what
		// it means.
		rest := d.b[d.i:]
		for next < len(keys) && !(len(rest) > len(keys[next]) && rest[len(keys[next])] == '"' &&
			string(rest[:len(keys[next])]) == keys[next]) {
			next++
		}
		if next == len(keys) {
			return false
		}
		d.i += len(keys[next]) + 1
		if !d.byte(':') || !value(next) {
			return false
		}
		next++
		if !d.byte(',') {
			return d.byte('}')
		}
	}
}

func (d *taskDecoder) byte(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// plain marks the bytes a string may hold to be its own decoding: printable
// ASCII but the quote and the backslash.
var plain = func() (p [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		p[c] = c != '"' && c != '\\'
	}
	return p
}()

// plainEnd returns the index of the first byte from b[i] on that is not
// plain, or len(b).
func plainEnd(b []byte, i int) int {
	for i < len(b) && plain[b[i]] {
		i++
	}
	return i
}

// plainString returns the inside of b when b is a JSON string of plain
// bytes only: that is its decoding.
func plainString(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	for _, c := range b[1 : len(b)-1] {
		if !plain[c] {
			return "", false
		}
	}
	return string(b[1 : len(b)-1]), true
}

// plainToken reads a string of plain bytes only and returns it with its
// quotes (the token encoding/json hands to an UnmarshalJSON method).
func (d *taskDecoder) plainToken() ([]byte, bool) {
	start := d.i
	if !d.byte('"') {
		return nil, false
	}
	d.i = plainEnd(d.b, d.i)
	if !d.byte('"') {
		return nil, false
	}
	return d.b[start:d.i], true
}

// stringBytes reads a string and returns its decoding: a slice of the input
// when it holds plain bytes only, otherwise unquoted as encoding/json does
// into d.scratch, valid until the next call.
func (d *taskDecoder) stringBytes() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	d.i = plainEnd(d.b, d.i)
	if d.byte('"') {
		return d.b[start : d.i-1], true
	}
	// An escape, a byte >= 0x80 or the end: find the closing quote.
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			var ok bool
			d.scratch, ok = unquote(d.scratch[:0], d.b[start:d.i-1])
			return d.scratch, ok
		case c == '\\':
			d.i += 2
		case c < 0x20:
			return nil, false
		default:
			d.i++
		}
	}
	return nil, false
}

func (d *taskDecoder) str(s *string) bool {
	b, ok := d.stringBytes()
	if ok {
		*s = string(b)
	}
	return ok
}

// status reads a TaskStatus, without allocating for the defined ones.
func (d *taskDecoder) status(s *TaskStatus) bool {
	b, ok := d.stringBytes()
	if !ok {
		return false
	}
	for _, st := range AllStatuses {
		if string(st) == string(b) {
			*s = st
			return true
		}
	}
	*s = TaskStatus(b)
	return true
}

// bytes reads a []byte as encoding/json does: base64 (StdEncoding) in a
// string; "" is an empty, non-nil slice.
func (d *taskDecoder) bytes(v *[]byte) bool {
	s, ok := d.stringBytes()
	if !ok {
		return false
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	*v = b[:n]
	return err == nil
}

func (d *taskDecoder) time(t *time.Time) bool {
	tok, ok := d.plainToken()
	return ok && t.UnmarshalJSON(tok) == nil
}

func (d *taskDecoder) bool(v *bool) bool {
	switch {
	case d.literal("true"):
		*v = true
	case d.literal("false"):
		*v = false
	default:
		return false
	}
	return true
}

func (d *taskDecoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// digits reads a JSON integer without sign: 0 or a non-zero digit and more,
// at most 19 digits (so it fits a uint64), not followed by a fraction or
// exponent.
func (d *taskDecoder) digits() (uint64, bool) {
	start := d.i
	var n uint64
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		n = n*10 + uint64(d.b[d.i]-'0')
		d.i++
	}
	switch l := d.i - start; {
	case l == 0 || l > 19 || l > 1 && d.b[start] == '0':
		return 0, false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return 0, false
	}
	return n, true
}

// int reads an integer an int holds; -0 is 0, as strconv.ParseInt reads it.
func (d *taskDecoder) int(v *int) bool {
	neg := d.byte('-')
	n, ok := d.digits()
	if !ok || n > 1<<63-1 {
		return false
	}
	i := int64(n)
	if neg {
		i = -i
	}
	if int64(int(i)) != i {
		return false
	}
	*v = int(i)
	return true
}

func (d *taskDecoder) uint(v *uint64) bool {
	n, ok := d.digits()
	*v = n
	return ok
}

// float reads a JSON number with strconv.ParseFloat, as encoding/json does
// (the values handlers report most, 1 and -1 for unknown, without it).
func (d *taskDecoder) float(v *float64) bool {
	start := d.i
	d.byte('-')
	switch {
	case d.byte('0'):
	case d.i < len(d.b) && '1' <= d.b[d.i] && d.b[d.i] <= '9':
		d.skipDigits()
	default:
		return false
	}
	if d.byte('.') && !d.skipDigits() {
		return false
	}
	if d.byte('e') || d.byte('E') {
		if !d.byte('+') {
			d.byte('-')
		}
		if !d.skipDigits() {
			return false
		}
	}
	switch tok := d.b[start:d.i]; string(tok) {
	case "0":
		*v = 0
	case "1":
		*v = 1
	case "-1":
		*v = -1
	default:
		f, err := strconv.ParseFloat(string(tok), 64)
		*v = f
		return err == nil
	}
	return true
}

func (d *taskDecoder) skipDigits() bool {
	start := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// unquote appends the decoding of s, the inside of a JSON string, to out as
// encoding/json's unquote does: escapes, \u surrogate pairs, and U+FFFD for
// a lone surrogate or a byte of invalid UTF-8.
func unquote(out, s []byte) ([]byte, bool) {
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			if r+1 >= len(s) {
				return nil, false
			}
			switch e := s[r+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				rr := getu4(s[r:])
				if rr < 0 {
					return nil, false
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						out = utf8.AppendRune(out, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				out = utf8.AppendRune(out, rr)
				continue
			default:
				return nil, false
			}
			r += 2
		case c == '"' || c < ' ':
			return nil, false
		case c < utf8.RuneSelf:
			out = append(out, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			if rr == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, unicode.ReplacementChar)
			} else {
				out = append(out, s[r:r+size]...)
			}
			r += size
		}
	}
	return out, true
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
