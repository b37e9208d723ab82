// Package registry is hail's one read model of hail_instances. A Follower
// watches the bucket (its initial values, then every change, in revision
// order), decodes each entry once with the events package's rules, keeps
// the records in a Registry, and tells its subscribers what changed.
//
// Each program runs one follower and shares it: a discovery node answers
// queries from it and learns of other writers' changes through it, the
// router's table builds its pickers from one service's records at a time,
// and the operator's console lists it. A discovery node also reports its
// own writes as they complete (Put, Delete), so queries see them before
// their echo comes back through the watch; revisions keep the two kinds of
// report in order.
package registry
