# A small web app with one gem from the Gemfile: kiln/ruby installs it with Debian's bundler into
# a gems layer, and ships Debian's Ruby as the runtime (webrick is a gem since Ruby 3.0).
require 'webrick'

server = WEBrick::HTTPServer.new(
  Port: Integer(ENV.fetch('PORT', '8080')),
  BindAddress: '0.0.0.0',
  AccessLog: [],
  Logger: WEBrick::Log.new($stderr, WEBrick::Log::WARN),
)
server.mount_proc('/') do |_req, res|
  res['Content-Type'] = 'text/plain'
  res.body = "Hello from kiln: ruby-app (Ruby #{RUBY_VERSION}, WEBrick #{WEBrick::VERSION})\n"
end
%w[INT TERM].each { |sig| trap(sig) { server.shutdown } }
server.start
