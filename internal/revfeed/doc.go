// Package revfeed holds what the session stores' revocation feeds share: the payload format of an
// event on the wire ("f:" and a family ID, "t:" and a tombstone key) and the pump that hands events
// to a subscriber on a goroutine of its own, dropping the excess for a subscriber a whole queue
// behind and telling it so with a Resync.
package revfeed
