// The benchmark peer: @tus/server with @tus/file-store, as its README sets it up.
//   node peer.mjs <port> <directory>
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) });
server.listen({ host: '127.0.0.1', port: Number(port) }, () => {
  console.log(`@tus/server on http://127.0.0.1:${port}/files`);
});
