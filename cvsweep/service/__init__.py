"""The sweep service: an HTTP API and a web page that start, watch, stop and collect sweeps
(``cvsweep serve``). Each sweep is the ``cvsweep -m`` command in a child process, its
state in files under the outputs root, so a restarted server finds every sweep again."""
