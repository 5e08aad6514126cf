#!/usr/bin/python3
"""RTSP test server: serves one H.264 file, looped forever, at one or more mount points.

usage: /usr/bin/python3 rtsp-server.py --port N --file clip.mkv cam1 [cam2 ...]

--port 0 lets the kernel choose; the bound port is printed on the ready line:
    READY port=<n>

Why two pipelines per served stream: `multifilesrc loop=true` restarts every loop at timestamp 0, so
clients never advance (see shared/notes/infra-facts.md). Instead a reader pipeline
(filesrc ! demux ! h264parse ! appsink, synced to the clock so it runs at real-time pace) rewinds with a
flushing seek at end of file, and hands each access unit, with its timestamps cleared, to a live appsrc
in the RTSP media pipeline that stamps it with its own running time. Timestamps therefore grow forever.

The server exits when its stdin reaches end of file, so it never outlives the test that started it,
even if that test is killed. Lines on stdin are commands:
    SWITCH <mount> <file>   the mount plays <file> (an H.264 clip like --file) from now on; connected
                            clients stay connected and see the new picture. Answered on stdout with
                            `SWITCHED <mount>` or `ERROR <mount> <why>`.
The new file must have the same encoding and size as the old one, or clients' decoders see new caps.
"""
import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MEDIA_LAUNCH = (
    "( appsrc name=src is-live=true do-timestamp=true format=time "
    "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


class Reader:
    """Reads the file at real-time pace, forever, into one media's appsrc."""

    def __init__(self, path, appsrc):
        self.appsrc = appsrc
        self.caps = None
        self.started = False
        self.stopped = False
        self.pipeline = self.build(path)
        # Reading starts when the appsrc first asks for data, i.e. once the media pipeline runs: caps set on an
        # appsrc that is not started yet are flushed with its queue when it starts, and buffers without caps never
        # reach the payloader (a loaded machine, where the media pipeline starts late, showed it: no frames at all).
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, _src, _length):
        if not self.started:
            self.started = True
            GLib.idle_add(self.start_once)

    def start_once(self):
        if not self.stopped:
            self.start()
        return False

    def build(self, path):
        pipeline = Gst.parse_launch(
            "filesrc name=file ! parsebin ! h264parse config-interval=-1 "
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! appsink name=sink sync=true emit-signals=true max-buffers=4"
        )
        pipeline.get_by_name("file").set_property("location", path)
        sink = pipeline.get_by_name("sink")
        sink.connect("new-sample", self.on_sample)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::eos", self.on_eos)
        bus.connect("message::error", self.on_error)
        return pipeline

    def start(self):
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self):
        self.stopped = True
        self.pipeline.get_bus().remove_signal_watch()
        self.pipeline.set_state(Gst.State.NULL)

    def switch(self, path):
        """Plays another file from its start; the appsrc, and so every client, carries on.

        A new reader pipeline, not the old one restarted: parsebin links its source pad only once, so a
        restarted pipeline stops with `not-linked`."""
        self.stop()
        self.stopped = False
        self.pipeline = self.build(path)
        if self.started:
            self.start()

    def on_sample(self, sink):
        sample = sink.emit("pull-sample")
        caps = sample.get_caps()
        if self.caps is None or not caps.is_equal(self.caps):
            self.appsrc.set_property("caps", caps)
            self.caps = caps
        buf = sample.get_buffer().copy()
        # appsrc's do-timestamp only stamps buffers that carry no timestamp of their own.
        buf.pts = Gst.CLOCK_TIME_NONE
        buf.dts = Gst.CLOCK_TIME_NONE
        self.appsrc.emit("push-buffer", buf)
        return Gst.FlowReturn.OK

    def on_eos(self, _bus, _msg):
        self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)

    def on_error(self, _bus, msg):
        err, debug = msg.parse_error()
        print(f"reader error: {err.message} ({debug})", file=sys.stderr, flush=True)


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, path):
        super().__init__()
        self.path = path
        self.readers = set()
        self.set_launch(MEDIA_LAUNCH)
        # One media (and one reader) per client: a shared media that is being torn down as its last client leaves
        # is handed to the next client that connects at that moment ("media was not prepared"), which then gets no
        # stream. A reader only demuxes and parses, so one per client costs little.
        self.set_shared(False)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory, media):
        reader = Reader(self.path, media.get_element().get_by_name("src"))
        self.readers.add(reader)
        media.connect("unprepared", lambda _m: (self.readers.discard(reader), reader.stop()))

    def switch(self, path):
        self.path = path
        for reader in self.readers:
            reader.switch(path)


class Commands:
    """Reads command lines from stdin; its end of file stops the main loop."""

    def __init__(self, loop, factories):
        self.loop = loop
        self.factories = factories
        self.pending = b""
        GLib.io_add_watch(sys.stdin.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, self.on_input)

    def on_input(self, fd, _condition):
        data = os.read(fd, 65536)
        if not data:
            self.loop.quit()
            return False
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.run(line.decode("utf-8", "replace").strip())
        return True

    def run(self, line):
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[0] != "SWITCH":
            print(f"ERROR - unknown command: {line}", flush=True)
            return
        _, mount, path = parts
        factory = self.factories.get(mount)
        if factory is None:
            print(f"ERROR {mount} no such mount", flush=True)
        elif not os.path.isfile(path):
            print(f"ERROR {mount} no such file: {path}", flush=True)
        else:
            factory.switch(path)
            print(f"SWITCHED {mount}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("mounts", nargs="+")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factories = {mount: LoopingFactory(args.file) for mount in args.mounts}
    for mount, factory in factories.items():
        server.get_mount_points().add_factory("/" + mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr, flush=True)
        sys.exit(1)

    loop = GLib.MainLoop()
    Commands(loop, factories)
    print(f"READY port={server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
