package admin

// ServeWithReadTimeout is Serve with a read timeout of the test's choice.
var ServeWithReadTimeout = serve
