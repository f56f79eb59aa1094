// Package sandbox provides in-process look-alikes of Apple's push gateway
// (APNs) and of Firebase Cloud Messaging HTTP v1 with Google's OAuth token
// endpoint. They speak HTTP/2 over TLS on 127.0.0.1 only, answer in the
// providers' own formats (so apns2 and the firebase SDK classify their errors
// as they would in production), record every request, and can be told to
// refuse device tokens or to fail (status, Retry-After, delay, stream reset;
// every request or a random fraction of them). For load, recording can be
// turned off and deliveries counted, in all or by ack_id (CountAckIDs).
//
// The relay's demo command and the tests of other packages use them:
//
//	apns, fcm := sandbox.NewAPNs(), sandbox.NewFCM()
//	defer apns.Close()
//	defer fcm.Close()
//	creds, err := sandbox.WriteCredentials(t.TempDir(), apns, fcm)
//	// point a relay config at apns.URL(), fcm.URL(), creds.CAFile, ...
//	apns.KillToken("dead-token", "Unregistered")
//	fcm.Fail(sandbox.Fault{Status: 503, RetryAfter: time.Second, Count: 1})
//
// All sandboxes of a process share one freshly generated, self-signed
// certificate valid for 127.0.0.1, ::1 and localhost; CertPEM returns it.
// Everything here is safe for concurrent use.
//
// Production paths never link it: cmd/pushrelay's demo and bench use it,
// and the nodemo build leaves them out. It imports nothing of relay or
// policy.
package sandbox
