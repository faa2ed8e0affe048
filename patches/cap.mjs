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
 * (defaults keep cap's behaviour) and a stats() method. Each edit states the exact text it replaces;
 * if cap's source differs (another version), this fails rather than guessing.
 *
 * cap is an optional dependency: only the daemon captures, and the client must install where there
 * is no compiler or libpcap. Without cap, or when it cannot be built, this says so in one line and
 * succeeds; the daemon reports the missing binding when it opens a capture.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const MARK = "/* knockgate patch v1 */";

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
    what: "stats() registration",
    find: `      Nan::SetPrototypeMethod(tpl, "close", Close);`,
    replace: `      Nan::SetPrototypeMethod(tpl, "close", Close);
      Nan::SetPrototypeMethod(tpl, "stats", Stats);`,
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
let source = readFileSync(file, "utf8");
if (!source.includes(MARK)) {
  for (const edit of EDITS) {
    const at = source.indexOf(edit.find);
    if (at === -1 || source.indexOf(edit.find, at + 1) !== -1) {
      console.error(`patches/cap.mjs: ${edit.what}: the text to replace is not in ${file} exactly once`);
      process.exit(1);
    }
    source = source.replace(edit.find, () => edit.replace);
  }
  writeFileSync(file, source);
}

// In a child process: a native addon, once loaded, stays loaded in this one.
const built = () => {
  const probe = `process.exit(typeof require(${JSON.stringify(capDir)}).Cap.prototype.stats === "function" ? 0 : 1)`;
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
    console.error("patches/cap.mjs: rebuilt cap, but its stats() method is still missing");
    process.exit(1);
  }
}
console.log(`patches/cap.mjs: cap ${version} patched (snaplen, promisc, inbound-only, stats)`);
