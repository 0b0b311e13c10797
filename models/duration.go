package models

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string such as
// "30s" or "1m30s", so task records stay readable. It also decodes a JSON
// number as nanoseconds, which is how a plain time.Duration is encoded.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	// A string of plain bytes is what json.Unmarshal would decode it to,
	// without reflection: every task record with a timeout has one.
	s, isString := plainString(b)
	if !isString {
		isString = json.Unmarshal(b, &s) == nil
	}
	if isString {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"30s\" or integer nanoseconds, got %s", b)
	}
	*d = Duration(n)
	return nil
}

// String returns the duration as time.Duration formats it.
func (d Duration) String() string { return time.Duration(d).String() }

// Upper bounds of the durations a task carries, far beyond any sensible
// setting and far below where time arithmetic overflows (a deadline is
// sent to plugins in Unix nanoseconds, which end in 2262).
const (
	// MaxTimeout bounds a task's per-attempt timeout.
	MaxTimeout = 365 * 24 * time.Hour
	// MaxRetryDelay bounds the delay before a retry, whoever asks for it.
	MaxRetryDelay = 365 * 24 * time.Hour
	// MaxStartDelay bounds how far ahead a task's first attempt may be
	// scheduled (Omniq-Run-At): a task due in the year 9999 would never end.
	MaxStartDelay = 365 * 24 * time.Hour
)

// Milliseconds is n milliseconds as a Duration, saturating at the largest
// (or smallest) Duration instead of overflowing.
func Milliseconds(n int64) time.Duration {
	const lim = int64(math.MaxInt64 / int64(time.Millisecond))
	switch {
	case n > lim:
		return math.MaxInt64
	case n < -lim:
		return math.MinInt64
	}
	return time.Duration(n) * time.Millisecond
}
