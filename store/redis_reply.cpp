#include "store/redis_reply.hpp"

#include <hiredis/hiredis.h>

#include <atomic>

namespace keygate::store {

namespace {

// hiredis' own reply functions (one static table, shared by every reader), which the bounded
// table below forwards to.
std::atomic<const redisReplyObjectFunctions*> hiredis_table{nullptr};

const redisReplyObjectFunctions* hiredis() { return hiredis_table.load(std::memory_order_relaxed); }

void* create_string(const redisReadTask* task, char* text, std::size_t length) {
  return hiredis()->createString(task, text, length);
}
void* create_array(const redisReadTask* task, int elements) {
  // Null is hiredis' "out of memory": the reader fails and the connection is dropped.
  if (elements > max_reply_elements) return nullptr;
  return hiredis()->createArray(task, elements);
}
void* create_integer(const redisReadTask* task, long long value) {
  return hiredis()->createInteger(task, value);
}
void* create_nil(const redisReadTask* task) { return hiredis()->createNil(task); }
void free_object(void* object) { hiredis()->freeObject(object); }

redisReplyObjectFunctions bounded_functions{create_string, create_array, create_integer,
                                            create_nil, free_object};

}  // namespace

void bound_reply_reader(redisReader& reader) {
  if (reader.fn == &bounded_functions || reader.fn == nullptr) return;
  hiredis_table.store(reader.fn, std::memory_order_relaxed);  // the same table for every reader
  reader.fn = &bounded_functions;
}

redisReader* create_reply_reader() {
  redisReader* reader = redisReaderCreate();
  if (reader != nullptr) bound_reply_reader(*reader);
  return reader;
}

RedisReply copy_reply(const redisReply& reply) {
  RedisReply out;
  switch (reply.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.kind = reply.type == REDIS_REPLY_STRING   ? RedisReply::Kind::string
                 : reply.type == REDIS_REPLY_STATUS ? RedisReply::Kind::status
                                                    : RedisReply::Kind::error;
      out.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.kind = RedisReply::Kind::integer;
      out.integer = reply.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.kind = RedisReply::Kind::array;
      out.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i) {
        out.elements.push_back(copy_reply(*reply.element[i]));
      }
      break;
    default:  // REDIS_REPLY_NIL
      out.kind = RedisReply::Kind::nil;
      break;
  }
  return out;
}

std::string_view reply_text(const redisReply* reply) {
  if (reply == nullptr || reply->str == nullptr) return {};
  return {reply->str, reply->len};
}

}  // namespace keygate::store
