package models

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// taskJSON is Task without its methods: json.Marshal of it is the
// reflection-based encoding that AppendJSON reproduces.
type taskJSON Task

// AppendJSON appends t's JSON encoding to b: byte for byte what
// json.Marshal(t) writes, without reflection for the records runners write
// on every task (in a profile of a draining runner, encoding/json was 10%
// of its CPU). Records with errors, and anything unusual (a time json
// cannot encode, a string that needs escaping), take encoding/json's path.
func (t *Task) AppendJSON(b []byte) ([]byte, error) {
	if t.Error != nil || len(t.Errors) > 0 || !fastTime(t.CreatedAt) || !fastTime(t.RunAt) || !fastTime(t.StartedAt) ||
		!fastTime(t.FinishedAt) || !fastTime(t.UpdatedAt) || t.Progress != nil && !fastProgress(t.Progress) ||
		!plain(t.ID) || !plain(t.Function) || !plain(string(t.Status)) || !plain(t.Runner) || !plain(t.ClaimStream) {
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
	b = appendIntField(b, `,"errors_dropped":`, t.ErrorsDropped, true)
	return append(b, '}'), nil
}

func appendIntField(b []byte, name string, v int, omitZero bool) []byte {
	if omitZero && v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, name...), int64(v), 10)
}

func appendStringField(b []byte, name, v string) []byte {
	b = append(b, name...)
	b = append(b, '"')
	b = append(b, v...)
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

// plain says s is written as is between quotes by encoding/json: printable
// ASCII without the characters it escapes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
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
	return !math.IsNaN(p.Fraction) && !math.IsInf(p.Fraction, 0) && plain(p.Message) && fastTime(p.UpdatedAt)
}
