package runner

import natsjs "github.com/nats-io/nats.go/jetstream"

// HandleDelivery handles msg, a delivery of a task of fn that the test
// fetched itself, as r's pull loop would handle one it fetched. It lets a
// test hand a runner a delivery at a moment of its choosing: a stale one.
func (r *Runner) HandleDelivery(fn string, msg natsjs.Msg) {
	res := r.cfg.resolve(fn, r.cfg.Plugins.Functions()[fn])
	r.tasks.Add(1)
	defer r.tasks.Done()
	r.handle(fn, res, msg)
}
