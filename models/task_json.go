package models

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// taskJSON is Task without its methods: json.Marshal of it is the
// reflection-based encoding that AppendJSON reproduces.
type taskJSON Task

// AppendJSON appends t's JSON encoding to b: byte for byte what
// json.Marshal(t) writes, without reflection for the records runners write
// on every task (in a profile of a draining runner, encoding/json was 10%
// of its CPU). A record encoding/json would refuse (a time it cannot
// encode, a progress fraction that is not a number) takes its path, for
// its error.
func (t *Task) AppendJSON(b []byte) ([]byte, error) {
	if !fastTime(t.CreatedAt) || !fastTime(t.RunAt) || !fastTime(t.StartedAt) || !fastTime(t.FinishedAt) ||
		!fastTime(t.UpdatedAt) || !fastTime(t.QuarantinedUntil) || t.Progress != nil && !fastProgress(t.Progress) || !fastErrors(t) {
		out, err := json.Marshal((*taskJSON)(t))
		return append(b, out...), err
	}
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(t.SchemaVersion), 10)
	b = appendStringField(b, `,"id":`, t.ID)
	b = appendStringField(b, `,"function":`, t.Function)
	b = appendStringField(b, `,"status":`, string(t.Status))
	b = appendIntField(b, `,"attempt":`, t.Attempt, false)
	b = appendIntField(b, `,"retry_count":`, t.RetryCount, false)
	b = appendIntField(b, `,"max_retries":`, t.MaxRetries, false)
	b = appendIntField(b, `,"interruptions":`, t.Interruptions, true)
	b = appendIntField(b, `,"replays":`, t.Replays, true)
	b = appendIntField(b, `,"quarantine_waits":`, t.QuarantineWaits, true)
	b = appendIntField(b, `,"plugin_crashes":`, t.PluginCrashes, true)
	b = appendIntField(b, `,"shared_crashes":`, t.SharedCrashes, true)
	if t.Timeout != 0 {
		b = append(b, `,"timeout":"`...)
		b = append(b, time.Duration(t.Timeout).String()...) // digits, units and µ: nothing to escape
		b = append(b, '"')
	}
	if t.Runner != "" {
		b = appendStringField(b, `,"runner":`, t.Runner)
	}
	if t.ClaimSequence != 0 {
		b = append(b, `,"claim_sequence":`...)
		b = strconv.AppendUint(b, t.ClaimSequence, 10)
	}
	if t.ClaimDelivery != 0 {
		b = append(b, `,"claim_delivery":`...)
		b = strconv.AppendUint(b, t.ClaimDelivery, 10)
	}
	if t.ClaimStream != "" {
		b = appendStringField(b, `,"claim_stream":`, t.ClaimStream)
	}
	b = appendTimeField(b, `,"created_at":`, t.CreatedAt, false)
	b = appendTimeField(b, `,"run_at":`, t.RunAt, true)
	b = appendTimeField(b, `,"started_at":`, t.StartedAt, true)
	b = appendTimeField(b, `,"finished_at":`, t.FinishedAt, true)
	b = appendTimeField(b, `,"updated_at":`, t.UpdatedAt, false)
	if p := t.Progress; p != nil {
		b = append(b, `,"progress":{"fraction":`...)
		b = appendFloat(b, p.Fraction)
		if p.Message != "" {
			b = appendStringField(b, `,"message":`, p.Message)
		}
		b = appendTimeField(b, `,"updated_at":`, p.UpdatedAt, false)
		b = append(b, '}')
	}
	if len(t.Result) > 0 {
		b = append(b, `,"result":"`...)
		b = base64.StdEncoding.AppendEncode(b, t.Result)
		b = append(b, '"')
	}
	if t.Error != nil {
		b = appendTaskError(append(b, `,"error":`...), t.Error)
	}
	if len(t.Errors) > 0 {
		b = append(b, `,"errors":[`...)
		for i := range t.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTaskError(b, &t.Errors[i])
		}
		b = append(b, ']')
	}
	b = appendIntField(b, `,"errors_dropped":`, t.ErrorsDropped, true)
	b = appendTimeField(b, `,"quarantined_until":`, t.QuarantinedUntil, true)
	return append(b, '}'), nil
}

// AppendJSON appends e's JSON encoding to b: exactly what json.Marshal(e)
// writes, or its error, without reflection when the timestamp allows (as
// Task.AppendJSON). Dead-letter entries and the error-history bound encode
// one per failure.
func (e *TaskError) AppendJSON(b []byte) ([]byte, error) {
	if !fastTime(e.Timestamp) {
		out, err := json.Marshal(e)
		return append(b, out...), err
	}
	return appendTaskError(b, e), nil
}

func appendTaskError(b []byte, e *TaskError) []byte {
	b = appendStringField(append(b, '{'), `"error_type":`, e.ErrorType)
	b = appendStringField(b, `,"message":`, e.Message)
	b = appendTimeField(b, `,"timestamp":`, e.Timestamp, false)
	b = appendStringField(b, `,"traceback":`, e.Traceback)
	b = appendIntField(b, `,"retry_count":`, e.RetryCount, false)
	b = strconv.AppendBool(append(b, `,"is_retryable":`...), e.IsRetryable)
	return append(b, '}')
}

func fastErrors(t *Task) bool {
	if t.Error != nil && !fastTime(t.Error.Timestamp) {
		return false
	}
	for i := range t.Errors {
		if !fastTime(t.Errors[i].Timestamp) {
			return false
		}
	}
	return true
}

func appendIntField(b []byte, name string, v int, omitZero bool) []byte {
	if omitZero && v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, name...), int64(v), 10)
}

func appendStringField(b []byte, name, v string) []byte {
	return appendString(append(b, name...), v)
}

const hex = "0123456789abcdef"

// appendString writes s as a JSON string exactly as encoding/json does
// (its appendString with HTML escaping, which is what json.Marshal uses):
// <, > and & escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendTimeField(b []byte, name string, v time.Time, omitZero bool) []byte {
	if omitZero && v.IsZero() {
		return b
	}
	b = append(b, name...)
	b = append(b, '"')
	b = v.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat writes f as encoding/json does (f is finite).
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// fastTime says t is encoded by encoding/json as its RFC 3339 form with
// nanoseconds: a year it accepts and a zone offset in whole minutes.
func fastTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}

func fastProgress(p *Progress) bool {
	return !math.IsNaN(p.Fraction) && !math.IsInf(p.Fraction, 0) && fastTime(p.UpdatedAt)
}
