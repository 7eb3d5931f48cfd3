using Grpc.Core;

namespace ReferenceFarm.Protocol;

/// <summary>Reads a gRPC stream of <see cref="BlobChunk"/>s (an upload on the server, a download on an agent) as one
/// read-only stream.</summary>
/// <param name="reader">The chunks.</param>
/// <param name="first">Bytes already taken from the stream (the server reads the first chunk for its header), or empty.</param>
/// <param name="cancellationToken">Cancels reading the chunks.</param>
public sealed class BlobChunkStream(IAsyncStreamReader<BlobChunk> reader, ReadOnlyMemory<byte> first, CancellationToken cancellationToken) : Stream
{
    private ReadOnlyMemory<byte> _current = first;
    private bool _done;

    /// <inheritdoc />
    public override bool CanRead => true;

    /// <inheritdoc />
    public override bool CanSeek => false;

    /// <inheritdoc />
    public override bool CanWrite => false;

    /// <inheritdoc />
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc />
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <inheritdoc />
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken token = default)
    {
        while (_current.IsEmpty)
        {
            if (_done || !await reader.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                _done = true;
                return 0;
            }

            _current = reader.Current.Data.Memory;
        }

        var n = Math.Min(buffer.Length, _current.Length);
        _current[..n].CopyTo(buffer);
        _current = _current[n..];
        return n;
    }

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken token) =>
        ReadAsync(buffer.AsMemory(offset, count), token).AsTask();

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void Flush()
    {
    }

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
