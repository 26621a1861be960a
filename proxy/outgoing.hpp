#pragma once
// Internal to proxy/ (forward.cpp): the two small pieces a relay moves bytes with — a window
// borrowed from the worker's buffer pool, and a message on its way out (header first, then
// body pieces, chunk-framed when the message is chunked).
#include <boost/asio/buffer.hpp>

#include <array>
#include <charconv>
#include <cstring>
#include <memory>
#include <string_view>

#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;

// A relay window borrowed from the worker for the length of one exchange.
class Window {
 public:
  explicit Window(RelayBuffers& buffers) : buffers_(buffers), data_(buffers.take()) {}
  ~Window() { buffers_.give_back(std::move(data_)); }
  char* get() { return data_.get(); }

 private:
  RelayBuffers& buffers_;
  std::unique_ptr<char[]> data_;
};

// A message on its way out: the header formatted beforehand goes with the first write, then
// the body as it arrives, chunk-framed when the message is chunked. (What Beast's serializer
// writes, without walking the field list buffer by buffer on every write.)
class Outgoing {
 public:
  Outgoing(std::string_view header, bool chunked) : header_(header), chunked_(chunked) {}

  // What to write next: the header if not sent yet, `size` body bytes at `data` (maybe none),
  // and with `last` the end of a chunked body. Unused entries are empty.
  std::array<asio::const_buffer, 5> next(const char* data, std::size_t size, bool last) {
    std::array<asio::const_buffer, 5> out;
    std::size_t n = 0;
    if (!header_.empty()) {
      out[n++] = asio::buffer(header_.data(), header_.size());
      header_ = {};
    }
    if (size > 0 && chunked_) {
      // chunk-size CRLF data CRLF (RFC 9112 7.1)
      const auto end = std::to_chars(chunk_line_, chunk_line_ + 16, size, 16).ptr;
      std::memcpy(end, "\r\n", 2);
      out[n++] = asio::buffer(chunk_line_, static_cast<std::size_t>(end + 2 - chunk_line_));
      out[n++] = asio::buffer(data, size);
      out[n++] = asio::buffer("\r\n", 2);
    } else if (size > 0) {
      out[n++] = asio::buffer(data, size);
    }
    if (last && chunked_) out[n++] = asio::buffer("0\r\n\r\n", 5);  // last-chunk, no trailers
    return out;
  }

 private:
  std::string_view header_;  // empty once sent
  bool chunked_;
  char chunk_line_[18];
};

}  // namespace keygate::proxy
