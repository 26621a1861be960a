#include "store/usage_spill.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace keygate::store {

namespace {

std::string failure(const std::string& path, const char* what, int error) {
  return "usage spill file " + path + ": " + what + ": " + std::strerror(error);
}

}  // namespace

UsageSpill::UsageSpill(std::string path, ReplayPosition position)
    : path_(std::move(path)), position_(position) {}

UsageSpill::~UsageSpill() { close(); }

void UsageSpill::close() {
  if (fd_ >= 0) ::close(fd_);  // also releases the flock
  fd_ = -1;
  size_ = read_offset_ = 0;
}

std::string UsageSpill::open() {
  close();
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return failure(path_, "cannot open", errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) return "usage spill file " + path_ + ": in use by another process";
    return failure(path_, "cannot lock", error);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return failure(path_, "cannot stat", error);
  }
  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  // Cut a torn last line (a crash in the middle of an append): scan back to the last newline.
  std::uint64_t keep = size;
  char buffer[4096];
  while (keep > 0) {
    const std::uint64_t from = keep > sizeof buffer ? keep - sizeof buffer : 0;
    const ssize_t n = ::pread(fd, buffer, static_cast<std::size_t>(keep - from), static_cast<off_t>(from));
    if (n != static_cast<ssize_t>(keep - from)) {
      const int error = n < 0 ? errno : EIO;
      ::close(fd);
      return failure(path_, "cannot read", error);
    }
    const void* newline = ::memrchr(buffer, '\n', static_cast<std::size_t>(n));
    if (newline != nullptr) {
      keep = from + static_cast<std::uint64_t>(static_cast<const char*>(newline) - buffer) + 1;
      break;
    }
    keep = from;
  }
  torn_bytes_ = size - keep;
  if (keep != size && ::ftruncate(fd, static_cast<off_t>(keep)) != 0) {
    const int error = errno;
    ::close(fd);
    return failure(path_, "cannot cut a torn line", error);
  }
  fd_ = fd;
  size_ = keep;
  read_offset_ = 0;
  if (position_ == ReplayPosition::in_file) {
    if (std::string error = skip_replayed(); !error.empty()) {
      close();
      return error;
    }
  }
  return {};
}

std::string UsageSpill::skip_replayed() {
  // Holes first (whole blocks punched out), then the NUL bytes of a partly punched block.
  const off_t data = ::lseek(fd_, 0, SEEK_DATA);
  std::uint64_t at = data < 0 ? size_ : static_cast<std::uint64_t>(data);  // ENXIO: all hole
  char buffer[4096];
  while (at < size_) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof buffer, size_ - at));
    const ssize_t n = ::pread(fd_, buffer, want, static_cast<off_t>(at));
    if (n <= 0) return failure(path_, "cannot read", n < 0 ? errno : EIO);
    std::size_t i = 0;
    while (i < static_cast<std::size_t>(n) && buffer[i] == '\0') ++i;
    at += i;
    if (i < static_cast<std::size_t>(n)) break;
  }
  read_offset_ = std::min(at, size_);
  return read_offset_ == size_ ? consumed(size_) : std::string();  // all replayed: empty it
}

std::string UsageSpill::append(std::string_view lines) {
  if (fd_ < 0) return "usage spill file " + path_ + ": not open";
  std::size_t done = 0;
  while (done < lines.size()) {
    const ssize_t n = ::write(fd_, lines.data() + done, lines.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      // Leave no torn line behind: cut back to what was there.
      if (done > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        return failure(path_, "cannot write, and cannot cut the partial write", error);
      }
      return failure(path_, "cannot write", error);
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += lines.size();
  return {};
}

std::string UsageSpill::sync() {
  if (fd_ < 0) return {};
  if (::fsync(fd_) != 0) return failure(path_, "cannot fsync", errno);
  return {};
}

std::optional<UsageSpill::Chunk> UsageSpill::read(std::size_t max_lines, std::size_t max_bytes,
                                                  std::string& error) {
  Chunk chunk;
  chunk.end = read_offset_;
  if (fd_ < 0 || read_offset_ >= size_) return chunk;
  const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(max_bytes, size_ - read_offset_));
  chunk.data.resize(want);
  std::size_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(fd_, chunk.data.data() + got, want - got,
                              static_cast<off_t>(read_offset_ + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = failure(path_, "cannot read", n < 0 ? errno : EIO);
      return std::nullopt;
    }
    got += static_cast<std::size_t>(n);
  }
  // Keep whole lines only, at most max_lines of them.
  std::size_t end = 0;
  for (std::size_t at = 0; chunk.lines < max_lines;) {
    const std::size_t newline = chunk.data.find('\n', at);
    if (newline == std::string::npos) break;
    end = newline + 1;
    at = end;
    ++chunk.lines;
  }
  if (chunk.lines == 0) {
    // No whole line: a line longer than max_bytes, or a tail no append finished. Neither is one
    // the writer wrote; skip it as garbage rather than stall the replay.
    const std::size_t skip = want;
    chunk.data.clear();
    chunk.end = read_offset_ + skip;
    return chunk;
  }
  chunk.data.resize(end);
  chunk.end = read_offset_ + end;
  return chunk;
}

std::string UsageSpill::consumed(std::uint64_t end) {
  if (fd_ < 0) return {};
  read_offset_ = std::min(end, size_);
  if (read_offset_ < size_) {
    if (position_ != ReplayPosition::in_file || punch_failed_ || read_offset_ == 0) return {};
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                    static_cast<off_t>(read_offset_)) != 0) {
      punch_failed_ = true;
      return failure(path_, "cannot punch out replayed lines (a restart will replay them again)", errno);
    }
    return {};
  }
  if (::ftruncate(fd_, 0) != 0) return failure(path_, "cannot empty", errno);
  size_ = read_offset_ = 0;
  return {};
}

}  // namespace keygate::store
