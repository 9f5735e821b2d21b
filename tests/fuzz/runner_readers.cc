// Fuzz harness for the device runners' readers (edgebit/runtimes/runner_driver.h), built with ASan + UBSan by
// tests/fuzz/runner_inputs.py: the same code every runner uses to read .npy files and model.conf, called in one
// process over many files (starting a runner per case would be ~100x slower).
//
//   runner_readers npy|conf|ids FILE...    one line per file: "ok", "input-error <message>" or "other-error ..."
//
// "ids" reads token ids as the runners do, against model.conf "max_seq_len 64" and "vocab_size 1000".
// A memory error or undefined behaviour aborts the process (sanitizer report on stderr); the caller then runs the
// batch's files one by one to name the case.
#include <iostream>
#include <string>

#include "runner_driver.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: runner_readers npy|conf|ids FILE...\n";
    return 2;
  }
  const std::string kind = argv[1];
  edgebit::RunnerConf conf;
  conf.max_seq_len = 64;
  conf.vocab_size = 1000;
  for (int i = 2; i < argc; ++i) {
    try {
      if (kind == "npy") edgebit::ReadNpy(argv[i]);
      else if (kind == "conf") edgebit::ReadConf(argv[i]);
      else edgebit::ReadIds(argv[i], conf);
      std::cout << "ok\n";
    } catch (const edgebit::InputError& e) {
      std::string message = e.what();
      std::cout << "input-error " << (message.find('\n') == std::string::npos ? "" : "MULTILINE ") << message << "\n";
    } catch (const std::exception& e) {
      std::cout << "other-error " << e.what() << "\n";
    }
  }
  return 0;
}
