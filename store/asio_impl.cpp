// Asio is compiled once, here (BOOST_ASIO_SEPARATE_COMPILATION is set for the whole tree).
#include <boost/asio/impl/src.hpp>
