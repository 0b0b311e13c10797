package runner

import (
	"context"
	"errors"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// fetchAction is what a pull loop does after a fetch, given how it ended
// (decideFetch).
type fetchAction int

const (
	// fetchOn: the fetch ended normally (with tasks, or none before its
	// wait ran out): fetch again at once.
	fetchOn fetchAction = iota
	// fetchPause: the fetch failed in a way that passes (the server
	// leading the consumer stopped, a leader election, a reconnect):
	// pause (pauseAfter) and fetch again.
	fetchPause
	// fetchRepair: the consumer or its stream is gone, or fetches keep
	// failing: look the consumer up, provision it again if it is gone
	// (repair), then pause and fetch again.
	fetchRepair
)

func (a fetchAction) String() string {
	switch a {
	case fetchOn:
		return "fetch on"
	case fetchPause:
		return "pause"
	case fetchRepair:
		return "repair"
	}
	return "unknown"
}

// repairEvery is how many failed fetches in a row, of errors that do not
// say the consumer is gone, make a pull loop look for its consumer
// (repair): the third, the sixth, and so on. A consumer deleted between
// two fetches shows only as fetches nobody answers (nats.ErrNoResponders),
// as one whose leader is being elected does.
const repairEvery = 3

// Pauses of a pull loop after a failed fetch: fetchPauseMin after the
// first, doubling per failure in a row up to fetchPauseMax. A cluster
// elects a consumer's new leader within seconds of losing a server, and a
// loop that waits fetches again within a pause of it.
const (
	fetchPauseMin = 250 * time.Millisecond
	fetchPauseMax = 2 * time.Second
)

// decideFetch says what a pull loop does after a fetch that ended with
// err, which, if it is a failure, is the failed'th failed fetch in a row
// (this one included).
//
// Before, every failed fetch went to repair at once, whose first request
// (a stream lookup, with a 10 s deadline) was sent while the server that
// led the consumer stopped and the connection moved to another: it got no
// answer, and the function's tasks waited 10 s for it (clus23).
func decideFetch(err error, failed int) fetchAction {
	switch {
	case fetchedNormally(err):
		return fetchOn
	case consumerGone(err):
		return fetchRepair
	case failed > 0 && failed%repairEvery == 0:
		return fetchRepair
	}
	return fetchPause
}

// fetchedNormally reports whether err ends a fetch without failure: no
// error, no message before its wait ran out, or the loop stopping.
func fetchedNormally(err error) bool {
	return err == nil || errors.Is(err, natsjs.ErrNoMessages) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// consumerGone reports whether err says the consumer or its stream does
// not exist (deleted, or never created on this server).
func consumerGone(err error) bool {
	return errors.Is(err, natsjs.ErrConsumerDeleted) || errors.Is(err, natsjs.ErrConsumerNotFound) ||
		errors.Is(err, natsjs.ErrStreamNotFound)
}

// pauseAfter is the pause after the failed'th failed fetch in a row
// (failed >= 1): fetchPauseMin doubled per earlier failure, capped at
// fetchPauseMax, with jitter in its upper half so the loops of many
// functions that failed together do not fetch again together.
func pauseAfter(failed int) time.Duration {
	return backoff(fetchPauseMin, fetchPauseMax, max(failed-1, 0))
}
