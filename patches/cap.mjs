#!/usr/bin/env node
/**
 * Patches npm `cap` 0.2.1 (the libpcap binding) for knockgate and rebuilds it; run by `postinstall`.
 *
 * cap fixes what a port-knocking sniffer needs to choose:
 *  - snaplen 65535: in immediate mode libpcap's TPACKET_V2 ring then has MTU-sized slots, so 8 MB
 *    holds ~5,000 frames (~170 ms at 30k pps). Knocks need headers only; 256 bytes gives ~5x the
 *    slots in the same memory, which is what rides out a burst or a stall of the event loop.
 *  - promiscuous mode always on: knocks are addressed to the host, and a promiscuous host NIC takes
 *    in (and logs "entered promiscuous mode" for) traffic that is none of our business.
 *  - no pcap_setdirection: on Ethernet the host's own outgoing SYNs would be seen as knocks.
 *  - no pcap_stats: the kernel's count of packets dropped because the ring was full stays hidden.
 * The edits add optional arguments open(device, filter, bufSize, buffer, snaplen, promisc, inboundOnly)
 * (defaults keep cap's behaviour), a stats() method, fd(): the capture's socket, through which
 * the kernel engine sets its NFLOG group's flush timeout (src/adapters/capture.ts openNflog), and
 * the kernel's timestamp of each frame as two more arguments of the "packet" event (the bench dates
 * knocks and answers on the wire with them, bench/client.ts).
 *
 * And two crashes, for a daemon whose interfaces come and go:
 *  - Interface down or deleted: the packet socket reports an error, libuv hands the poll callback a
 *    non-zero status, and cap's `assert(status == 0)` aborts the process. Patched, the capture ends
 *    instead: polling stops and the Cap emits "error" (a pcap_dispatch error ends it the same way).
 *  - An open that fails after pcap_create ("No such device") left a half-made handle whose poll was
 *    never initialised; its close(), at the latest from the destructor at garbage collection, stopped
 *    that poll and dropped a reference never taken: SIGSEGV. Patched, a failed open closes its handle.
 * And NFLOG (the kernel engine reads `nflog:N`): libpcap's reader reports a nonblocking read with
 * nothing left as an error (EAGAIN), which ended the capture after its first burst; patched, it
 * does not end it.
 * The module exports `knockgatePatch` (PATCH_LEVEL) so that the build and the daemon can tell.
 *
 * Each edit states the exact text it replaces and is skipped when its result is already there, so
 * this runs again harmlessly (and upgrades an earlier level in place: UPGRADES rewrites what a
 * later level changed, and an earlier level's export is dropped); if cap's source differs
 * (another version), this fails rather than guessing.
 *
 * cap is an optional dependency: only the daemon captures, and the client must install where there
 * is no compiler or libpcap. Without cap, or when it cannot be built, this says so in one line and
 * succeeds; the daemon reports the missing binding when it opens a capture.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** In the first edit: marks a patched source (the text is unchanged since level 1, so that a level-1 source is recognised). */
const MARK = "/* knockgate patch v1 */";
/**
 * Bumped with every change to EDITS: a build of an older level is rebuilt. Levels only add: the
 * daemon takes any level from 4 on (src/adapters/capture.ts), the bench from 5 (bench/client.ts).
 */
const PATCH_LEVEL = 5;

const EDITS = [
  {
    what: "snaplen argument",
    find: `      // 64KB is the max IPv4 packet size
      if (pcap_set_snaplen(obj->pcap_handle, 65535) != 0)`,
    replace: `      ${MARK}
      int snaplen = 65535;
      if (info.Length() > 4 && info[4]->IsUint32())
        snaplen = Nan::To<int32_t>(info[4]).FromJust();
      if (pcap_set_snaplen(obj->pcap_handle, snaplen) != 0)`,
  },
  {
    what: "promiscuous-mode argument",
    find: `      if (pcap_set_promisc(obj->pcap_handle, 1) != 0)`,
    replace: `      int promisc = 1;
      if (info.Length() > 5 && info[5]->IsBoolean())
        promisc = Nan::To<bool>(info[5]).FromJust() ? 1 : 0;
      if (pcap_set_promisc(obj->pcap_handle, promisc) != 0)`,
  },
  {
    what: "inbound-only argument",
    find: `      if (pcap_setnonblock(obj->pcap_handle, 1, errbuf) == -1)
        return Nan::ThrowError(errbuf);
`,
    replace: `      if (pcap_setnonblock(obj->pcap_handle, 1, errbuf) == -1)
        return Nan::ThrowError(errbuf);

      if (info.Length() > 6 && info[6]->IsTrue()
          && pcap_setdirection(obj->pcap_handle, PCAP_D_IN) != 0)
        return Nan::ThrowError(pcap_geterr(obj->pcap_handle));
`,
  },
  {
    what: "stats() method",
    find: `    static NAN_METHOD(Close) {`,
    replace: `    static NAN_METHOD(Stats) {
      Pcap *obj = Nan::ObjectWrap::Unwrap<Pcap>(info.This());
      if (obj->pcap_handle == nullptr || obj->closing)
        return Nan::ThrowError("Not currently capturing/open");
      struct pcap_stat ps;
      if (pcap_stats(obj->pcap_handle, &ps) != 0)
        return Nan::ThrowError(pcap_geterr(obj->pcap_handle));
      Local<Object> out = Nan::New<Object>();
      Nan::Set(out, Nan::New<String>("received").ToLocalChecked(), Nan::New<Number>(ps.ps_recv));
      Nan::Set(out, Nan::New<String>("dropped").ToLocalChecked(), Nan::New<Number>(ps.ps_drop));
      Nan::Set(out, Nan::New<String>("ifDropped").ToLocalChecked(), Nan::New<Number>(ps.ps_ifdrop));
      info.GetReturnValue().Set(out);
    }

    static NAN_METHOD(Close) {`,
  },
  {
    what: "fd() method",
    find: `    static NAN_METHOD(Stats) {`,
    replace: `    // knockgate: the capture's socket, for a setting libpcap has no call for: the kernel engine's
    // NFLOG flush timeout, which the kernel takes only from the socket bound to the group.
    static NAN_METHOD(Fd) {
      Pcap *obj = Nan::ObjectWrap::Unwrap<Pcap>(info.This());
      if (obj->pcap_handle == nullptr || obj->closing)
        return Nan::ThrowError("Not currently capturing/open");
      info.GetReturnValue().Set(Nan::New<Number>(pcap_get_selectable_fd(obj->pcap_handle)));
    }

    static NAN_METHOD(Stats) {`,
  },
  {
    what: "stats() registration",
    find: `      Nan::SetPrototypeMethod(tpl, "close", Close);`,
    replace: `      Nan::SetPrototypeMethod(tpl, "close", Close);
      Nan::SetPrototypeMethod(tpl, "stats", Stats);`,
  },
  {
    what: "fd() registration",
    find: `      Nan::SetPrototypeMethod(tpl, "stats", Stats);`,
    replace: `      Nan::SetPrototypeMethod(tpl, "stats", Stats);
      Nan::SetPrototypeMethod(tpl, "fd", Fd);`,
  },
  {
    what: "sys/socket.h for SO_ERROR",
    find: `# include <sys/ioctl.h>
#endif`,
    replace: `# include <sys/ioctl.h>
# include <sys/socket.h>
#endif`,
  },
  {
    what: "polling flag",
    find: `    bool handling_packets;
#ifdef _WIN32`,
    replace: `    bool handling_packets;
    // knockgate: whether poll_handle was started (and Ref() taken) for the current pcap_handle.
    bool polling = false;
#ifdef _WIN32`,
  },
  {
    what: "cleanup clears the polling flag",
    find: `        buffer_length = 0;
        Unref();`,
    replace: `        buffer_length = 0;
        polling = false;
        Unref();`,
  },
  {
    what: "a capture ends instead of aborting the process",
    find: `    static void cb_packets(uv_poll_t* handle, int status, int events) {
      assert(status == 0);
      Pcap *obj = (Pcap*)handle->data;
      int packet_count;

      if (obj->closing)
        return obj->cleanup();

      if (events & UV_READABLE) {`,
    replace: `    // knockgate: the capture cannot go on (its interface went down or away): stop polling and
    // tell JavaScript with an "error" event; close() still releases the handle.
    static void ended(Pcap *obj, const char *why) {
      uv_poll_stop(&obj->poll_handle);
      Nan::HandleScope scope;
      Local<Value> emit_argv[2] = {
        Nan::New<String>("error").ToLocalChecked(),
        Nan::Error(why)
      };
      obj->async_res.runInAsyncScope(
        Nan::New<Object>(obj->persistent()),
        Nan::New<Function>(obj->Emit),
        2,
        emit_argv
      );
    }

    static void cb_packets(uv_poll_t* handle, int status, int events) {
      Pcap *obj = (Pcap*)handle->data;
      int packet_count;

      if (obj->closing)
        return obj->cleanup();

      // An error on the socket (ENETDOWN when the interface went down or was deleted), which libuv
      // reports as a status after it stopped the poll: the end of this capture, not of the process.
      if (status != 0) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(obj->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0)
          return ended(obj, uv_strerror(status));
        return ended(obj, strerror(err));
      }

      if (events & UV_READABLE) {`,
  },
  {
    what: "a pcap_dispatch error ends the capture",
    find: `        obj->handling_packets = false;
        if (obj->closing)
          obj->cleanup();
      }
    }
#endif`,
    replace: `        obj->handling_packets = false;
        if (obj->closing)
          obj->cleanup();
        // knockgate: libpcap's NFLOG reader (the kernel engine's nflog:N) reports a nonblocking
        // read with nothing left as an error (EAGAIN), where the packet socket's returns 0.
        else if (packet_count == PCAP_ERROR && errno != EAGAIN && errno != EWOULDBLOCK)
          ended(obj, pcap_geterr(obj->pcap_handle));
      }
    }
#endif`,
  },
  {
    what: "errno.h for EAGAIN",
    find: `#include <string.h>
`,
    replace: `#include <string.h>
#include <errno.h>
`,
  },
  {
    what: "a failed open closes its half-made handle",
    find: `    static NAN_METHOD(Open) {
      Pcap *obj = Nan::ObjectWrap::Unwrap<Pcap>(info.This());
`,
    replace: `    // knockgate: an open that failed after pcap_create closes its handle here, at once, instead
    // of leaving close() (or the destructor) to stop a poll that was never initialised.
    static NAN_METHOD(Open) {
      Pcap *obj = Nan::ObjectWrap::Unwrap<Pcap>(info.This());
      OpenHandle(info);
      if (obj->pcap_handle && !obj->polling) {
        pcap_close(obj->pcap_handle);
        obj->pcap_handle = nullptr;
        obj->buffer_data = nullptr;
        obj->buffer_length = 0;
      }
    }

    static NAN_METHOD(OpenHandle) {
      Pcap *obj = Nan::ObjectWrap::Unwrap<Pcap>(info.This());
`,
  },
  {
    what: "the open poll sets the polling flag",
    find: `      obj->poll_handle.data = obj;
#endif
`,
    replace: `      obj->poll_handle.data = obj;
      obj->polling = true;
#endif
`,
  },
  {
    what: "no stray warning on stderr",
    find: `        fprintf(stderr, "Warning: %s - This may not actually work\\n", errbuf);
`,
    replace: `        // knockgate: no line on stderr, where the daemon's log is JSON. Only a filter on broadcast
        // addresses needs the netmask, and knockgate's do not; nflog:N and an interface without an
        // IPv4 address have none.
`,
  },
  {
    what: "packet timestamps",
    find: `      Local<Value> emit_argv[3] = {
        Nan::New<String>(packet_symbol),
        Nan::New<Number>(copy_len),
        Nan::New<Boolean>(truncated)
      };
      obj->async_res.runInAsyncScope(
        Nan::New<Object>(obj->persistent()),
        Nan::New<Function>(obj->Emit),
        3,
        emit_argv
      );`,
    replace: `      // knockgate: the kernel's timestamp too (seconds, microseconds), taken as the frame passed
      // the packet socket's tap: when a frame was on the wire, not when the event loop got to it.
      Local<Value> emit_argv[5] = {
        Nan::New<String>(packet_symbol),
        Nan::New<Number>(copy_len),
        Nan::New<Boolean>(truncated),
        Nan::New<Number>(static_cast<double>(pkt_hdr->ts.tv_sec)),
        Nan::New<Number>(static_cast<double>(pkt_hdr->ts.tv_usec))
      };
      obj->async_res.runInAsyncScope(
        Nan::New<Object>(obj->persistent()),
        Nan::New<Function>(obj->Emit),
        5,
        emit_argv
      );`,
  },
  {
    what: "patch level export",
    find: `    Pcap::Initialize(target);
`,
    replace: `    Pcap::Initialize(target);
    Nan::Set(target,
             Nan::New<String>("knockgatePatch").ToLocalChecked(),
             Nan::New<Number>(${PATCH_LEVEL})).FromJust();
`,
  },
];

const require = createRequire(import.meta.url);
let capDir;
try {
  capDir = dirname(require.resolve("cap/package.json"));
} catch {
  console.log("patches/cap.mjs: npm cap is not installed (optional: only the daemon's capture needs it); nothing to patch");
  process.exit(0);
}
const { version } = JSON.parse(readFileSync(join(capDir, "package.json"), "utf8"));
if (version !== "0.2.1") {
  console.error(`patches/cap.mjs: written for cap 0.2.1, found ${version}; review the edits before changing the version`);
  process.exit(1);
}

const file = join(capDir, "src", "binding.cc");
const original = readFileSync(file, "utf8");
/** An earlier level's text, rewritten to this level's before the edits (each skipped when not there). */
const UPGRADES = [
  {
    what: "level 2 ended an NFLOG capture at its first empty read",
    find: `        else if (packet_count == PCAP_ERROR)
          ended(obj, pcap_geterr(obj->pcap_handle));`,
    replace: `        // knockgate: libpcap's NFLOG reader (the kernel engine's nflog:N) reports a nonblocking
        // read with nothing left as an error (EAGAIN), where the packet socket's returns 0.
        else if (packet_count == PCAP_ERROR && errno != EAGAIN && errno != EWOULDBLOCK)
          ended(obj, pcap_geterr(obj->pcap_handle));`,
  },
];

// An earlier level's export goes first, or the upgraded build would set both and report the old one.
const EXPORT = /\n {4}Nan::Set\(target,\n {13}Nan::New<String>\("knockgatePatch"\)\.ToLocalChecked\(\),\n {13}Nan::New<Number>\((\d+)\)\)\.FromJust\(\);/g;
let source = original.replace(EXPORT, (line, level) => (Number(level) === PATCH_LEVEL ? line : ""));
for (const upgrade of UPGRADES) source = source.replace(upgrade.find, () => upgrade.replace);
for (const edit of EDITS) {
  if (source.includes(edit.replace)) continue;
  const at = source.indexOf(edit.find);
  if (at === -1 || source.indexOf(edit.find, at + 1) !== -1) {
    console.error(`patches/cap.mjs: ${edit.what}: the text to replace is not in ${file} exactly once`);
    process.exit(1);
  }
  source = source.replace(edit.find, () => edit.replace);
}
if (source !== original) writeFileSync(file, source);

// In a child process: a native addon, once loaded, stays loaded in this one.
const built = () => {
  const probe = `process.exit(require(${JSON.stringify(capDir)}).knockgatePatch === ${PATCH_LEVEL} ? 0 : 1)`;
  try {
    execFileSync(process.execPath, ["-e", probe], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
if (!built()) {
  // npm sets npm_config_node_gyp to its bundled node-gyp for lifecycle scripts: the tool that built
  // cap a moment ago. Run by hand, `npm rebuild cap` gets there too.
  const gyp = process.env["npm_config_node_gyp"];
  try {
    if (gyp) execFileSync(process.execPath, [gyp, "rebuild"], { cwd: capDir, stdio: "inherit" });
    else execFileSync("npm", ["rebuild", "cap"], { stdio: "inherit" });
  } catch {
    // npm removes an optional dependency whose own build failed only after every install script has run.
    console.log("patches/cap.mjs: cannot build npm cap (needs libpcap-dev, python3, make and g++); the client works, the daemon cannot capture");
    process.exit(0);
  }
  if (!built()) {
    console.error(`patches/cap.mjs: rebuilt cap, but it does not report knockgate patch level ${PATCH_LEVEL}`);
    process.exit(1);
  }
}
console.log(`patches/cap.mjs: cap ${version} patched, level ${PATCH_LEVEL} (snaplen, promisc, inbound-only, stats, fd, timestamps, interfaces that go away, NFLOG)`);
