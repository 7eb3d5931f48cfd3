using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using FarmApi;

namespace FarmPlugins.Qarnot;

/// <summary>An object of a bucket listing.</summary>
internal sealed record RemoteObject(string Key, string ETag, long Size);

/// <summary>What an upload did.</summary>
internal sealed record UploadResult(int Uploaded, int Skipped, long BytesSent);

/// <summary>
/// Qarnot's S3 storage (Ceph) with AWSSDK.S3, the way the official SDKs use it: access key = the account's email,
/// secret = the API token, path-style, checksums only when required, multipart above 8 MiB in 8 MiB parts, several
/// requests in flight; a file whose ETag already matches is not sent again. Bodies go with their SHA-256 in the signature
/// (<c>UseChunkEncoding = false</c>), as the Python SDK sends them, not as <c>aws-chunked</c> streams: the storage then
/// neither decodes nor verifies a signature per 64 KiB chunk, and the client signs once per request.
/// </summary>
internal sealed class QarnotStorage : IDisposable
{
    public const long PartSize = 8L * 1024 * 1024;

    /// <summary>Files up to this size are read once into memory, hashed and sent from there.</summary>
    public const int SmallFile = 1024 * 1024;

    private readonly AmazonS3Client _s3;
    private readonly SemaphoreSlim _slots;
    private readonly int _transfers;
    private readonly EtagCache _etags;
    private readonly string _pluginName;
    private readonly SecretRedactor _redactor;

    public QarnotStorage(Uri endpoint, string accessKey, string secretKey, bool forcePathStyle, int transfers, string etagCacheFile,
        string pluginName, SecretRedactor redactor)
    {
        var config = new AmazonS3Config
        {
            ServiceURL = endpoint.AbsoluteUri,
            ForcePathStyle = forcePathStyle,
            AuthenticationRegion = "us-east-1",
            // Ceph: no default request checksums (the Python SDK turns them off too).
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            MaxErrorRetry = 3,
            Timeout = TimeSpan.FromMinutes(5),
        };
        _s3 = new AmazonS3Client(new BasicAWSCredentials(accessKey, secretKey), config);
        _transfers = transfers;
        _slots = new SemaphoreSlim(transfers);
        _etags = new EtagCache(etagCacheFile);
        _pluginName = pluginName;
        _redactor = redactor;
        Endpoint = endpoint;
    }

    public Uri Endpoint { get; }

    /// <summary>Bytes of file content sent by uploads so far (the figure a re-upload keeps at 0).</summary>
    public long ContentBytesSent => Interlocked.Read(ref _contentBytesSent);

    private long _contentBytesSent;

    public Task EnsureBucketAsync(string bucket, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        try
        {
            await _s3.PutBucketAsync(new PutBucketRequest { BucketName = bucket }, cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode is "BucketAlreadyOwnedByYou" or "BucketAlreadyExists")
        {
        }

        return true;
    }, $"create bucket {bucket}");

    public Task<bool> BucketExistsAsync(string bucket, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        try
        {
            await _s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = bucket, MaxKeys = 1 }, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket" || ex.StatusCode == HttpStatusCode.NotFound)
        {
            return false;
        }
    }, $"look at bucket {bucket}");

    public Task<int> CountBucketsAsync(CancellationToken cancellationToken) => RunAsync(async () =>
        (await _s3.ListBucketsAsync(new ListBucketsRequest(), cancellationToken).ConfigureAwait(false)).Buckets?.Count ?? 0, "list buckets");

    /// <summary>Every object under a prefix, in one paginated listing; an unknown bucket lists nothing.</summary>
    public Task<Dictionary<string, RemoteObject>> ListAsync(string bucket, string prefix, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        var result = new Dictionary<string, RemoteObject>(StringComparer.Ordinal);
        var request = new ListObjectsV2Request { BucketName = bucket, Prefix = prefix, MaxKeys = 1000 };
        try
        {
            while (true)
            {
                var page = await _s3.ListObjectsV2Async(request, cancellationToken).ConfigureAwait(false);
                foreach (var item in page.S3Objects ?? [])
                {
                    result[item.Key] = new RemoteObject(item.Key, NormalizeEtag(item.ETag), item.Size ?? 0);
                }

                if (page.IsTruncated != true || string.IsNullOrEmpty(page.NextContinuationToken))
                {
                    return result;
                }

                request.ContinuationToken = page.NextContinuationToken;
            }
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket")
        {
            return result;
        }
    }, $"list s3://{bucket}/{prefix}");

    /// <summary>Uploads files to keys, skipping those whose ETag already matches the listing of <paramref name="listPrefix"/>.</summary>
    public async Task<UploadResult> UploadAsync(string bucket, string listPrefix, IReadOnlyList<(string LocalPath, string Key)> files,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        var remote = await ListAsync(bucket, listPrefix, cancellationToken).ConfigureAwait(false);
        // One stat per file: its size and modification time serve the progress total, the ETag cache and the upload.
        var infos = files.Select(f => new FileInfo(Path.GetFullPath(f.LocalPath))).ToArray();
        var sizes = infos.Select(i => i.Length).ToArray();
        var total = sizes.Sum();
        long bytesDone = 0;
        long bytesSent = 0;
        var filesDone = 0;
        var uploaded = 0;
        var skipped = 0;
        var gate = new object();
        void Report(string? current)
        {
            if (progress is null)
            {
                return;
            }

            lock (gate)
            {
                progress.Report(new TransferProgress(Interlocked.Read(ref bytesDone), total, Volatile.Read(ref filesDone), files.Count, current));
            }
        }

        Report(null);
        await _etags.LoadAsync(cancellationToken).ConfigureAwait(false);
        await Parallel.ForEachAsync(Enumerable.Range(0, files.Count),
            new ParallelOptions { MaxDegreeOfParallelism = _transfers, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var (local, key) = files[i];
                remote.TryGetValue(key, out var existing);
                var multipart = sizes[i] > PartSize;
                bool sent;
                if (sizes[i] <= SmallFile)
                {
                    // Read once: the bytes hashed are the bytes sent, with no second open by the SDK.
                    sent = await PutSmallFileAsync(bucket, key, infos[i], existing, ct).ConfigureAwait(false);
                }
                else
                {
                    var etag = await _etags.GetAsync(infos[i], PartSize, ct).ConfigureAwait(false);
                    sent = existing is null || existing.Size != sizes[i] || !EtagMatches(etag, existing.ETag);
                    if (sent && multipart)
                    {
                        await UploadMultipartAsync(bucket, key, local, sizes[i], etag, part =>
                        {
                            Interlocked.Add(ref bytesDone, part);
                            Interlocked.Add(ref bytesSent, part);
                            Report(key);
                        }, ct).ConfigureAwait(false);
                    }
                    else if (sent)
                    {
                        await PutFileAsync(bucket, key, local, sizes[i], etag, ct).ConfigureAwait(false);
                    }
                }

                if (!sent)
                {
                    Interlocked.Increment(ref skipped);
                    Interlocked.Add(ref bytesDone, sizes[i]);
                }
                else
                {
                    Interlocked.Increment(ref uploaded);
                    if (!multipart)
                    {
                        // A multipart upload counted its parts as they went.
                        Interlocked.Add(ref bytesDone, sizes[i]);
                        Interlocked.Add(ref bytesSent, sizes[i]);
                    }
                }

                Interlocked.Increment(ref filesDone);
                Report(key);
            }).ConfigureAwait(false);
        await _etags.SaveAsync(cancellationToken).ConfigureAwait(false);
        Report(null);
        return new UploadResult(uploaded, skipped, bytesSent);
    }

    public Task PutTextAsync(string bucket, string key, string text, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        await _s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = key, ContentBody = text, UseChunkEncoding = false }, cancellationToken).ConfigureAwait(false);
        return true;
    }, $"write s3://{bucket}/{key}");

    public Task<string?> GetTextAsync(string bucket, string key, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        try
        {
            using var response = await _s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = key }, cancellationToken).ConfigureAwait(false);
            using var reader = new StreamReader(response.ResponseStream);
            return (string?)await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode is "NoSuchKey" or "NoSuchBucket" || ex.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }, $"read s3://{bucket}/{key}");

    /// <summary>Downloads an object to a file through a temporary file; the length is checked before the file is replaced.</summary>
    public Task DownloadAsync(string bucket, string key, string destination, long expectedSize, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            var temporary = destination + ".farm-partial";
            using (var response = await _s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = key }, cancellationToken).ConfigureAwait(false))
            {
                await using var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
                await response.ResponseStream.CopyToAsync(file, cancellationToken).ConfigureAwait(false);
            }

            var length = new FileInfo(temporary).Length;
            if (length != expectedSize)
            {
                File.Delete(temporary);
                throw new FarmPluginException($"Qarnot: s3://{bucket}/{key} arrived with {length} bytes instead of {expectedSize}.", null, _pluginName);
            }

            File.Move(temporary, destination, overwrite: true);
            return true;
        }
        finally
        {
            _slots.Release();
        }
    }, $"download s3://{bucket}/{key}");

    public Task DeletePrefixAsync(string bucket, string prefix, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        var keys = (await ListAsync(bucket, prefix, cancellationToken).ConfigureAwait(false)).Keys.ToList();
        foreach (var batch in keys.Chunk(1000))
        {
            await _s3.DeleteObjectsAsync(new DeleteObjectsRequest
            {
                BucketName = bucket,
                Objects = [.. batch.Select(k => new KeyVersion { Key = k })],
            }, cancellationToken).ConfigureAwait(false);
        }

        return true;
    }, $"delete s3://{bucket}/{prefix}");

    public Task DeleteBucketAsync(string bucket, CancellationToken cancellationToken) => RunAsync(async () =>
    {
        await DeletePrefixAsync(bucket, string.Empty, cancellationToken).ConfigureAwait(false);
        try
        {
            await _s3.DeleteBucketAsync(new DeleteBucketRequest { BucketName = bucket }, cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket")
        {
        }

        return true;
    }, $"delete bucket {bucket}");

    /// <summary>
    /// The S3 ETags a file may have once uploaded by this class: MD5 up to <see cref="PartSize"/>; above it the multipart
    /// ETag (MD5 of the part MD5s, <c>-parts</c>), and also the whole file's MD5, which some S3 servers answer instead.
    /// </summary>
    public static async Task<string> ComputeEtagAsync(string path, long partSize, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, useAsync: true);
        var length = stream.Length;
        // Pooled and no larger than the file: a thousand small files must not mean a thousand 1 MiB buffers.
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Clamp(length, 4096, 1 << 20));
        try
        {
            return await HashAsync(stream, length, buffer, partSize, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task<string> HashAsync(FileStream stream, long length, byte[] buffer, long partSize, CancellationToken cancellationToken)
    {
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        using var whole = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        using var part = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        var parts = 0;
        long inPart = 0;
        while (true)
        {
            var want = (int)Math.Min(buffer.Length, partSize - inPart);
            var read = await stream.ReadAsync(buffer.AsMemory(0, want), cancellationToken).ConfigureAwait(false);
            if (read > 0)
            {
                md5.AppendData(buffer, 0, read);
                part.AppendData(buffer, 0, read);
                inPart += read;
            }

            if (inPart == partSize || (read == 0 && inPart > 0))
            {
                whole.AppendData(part.GetHashAndReset());
                parts++;
                inPart = 0;
            }

            if (read == 0)
            {
                break;
            }
        }

        var plain = Convert.ToHexStringLower(md5.GetHashAndReset());
        return length <= partSize ? plain
            : Convert.ToHexStringLower(whole.GetHashAndReset()) + "-" + parts.ToString(CultureInfo.InvariantCulture) + "|" + plain;
    }

    /// <summary>Whether a remote ETag matches what <see cref="ComputeEtagAsync"/> gave.</summary>
    public static bool EtagMatches(string local, string remote) =>
        local.Split('|').Contains(NormalizeEtag(remote), StringComparer.Ordinal);

    public static string NormalizeEtag(string? etag) => (etag ?? string.Empty).Trim('"').ToLowerInvariant();

    /// <summary>
    /// A file of at most <see cref="SmallFile"/> bytes: skipped without reading when its cached ETag matches the listing;
    /// otherwise read whole into a pooled buffer, hashed, and (unless the listing has that hash) sent from the buffer.
    /// Returns whether it was sent.
    /// </summary>
    private async Task<bool> PutSmallFileAsync(string bucket, string key, FileInfo info, RemoteObject? existing, CancellationToken cancellationToken)
    {
        if (existing is not null && existing.Size == info.Length && _etags.TryGet(info, out var cached) && EtagMatches(cached, existing.ETag))
        {
            return false;
        }

        var buffer = ArrayPool<byte>.Shared.Rent((int)info.Length + 1);
        try
        {
            int length;
            using (var handle = File.OpenHandle(info.FullName))
            {
                length = ReadWhole(handle, buffer);
            }

            var etag = Convert.ToHexStringLower(MD5.HashData(buffer.AsSpan(0, length)));
            if (length == info.Length)
            {
                // Cached only for the size and time that were read; a file changing meanwhile is hashed again next time.
                _etags.Set(info, etag);
            }

            if (existing is not null && existing.Size == length && EtagMatches(etag, existing.ETag))
            {
                return false;
            }

            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                using var body = new MemoryStream(buffer, 0, length, writable: false);
                var response = await RunAsync(() => _s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = key, InputStream = body, AutoCloseStream = false, UseChunkEncoding = false }, cancellationToken),
                    $"upload {info.FullName} to s3://{bucket}/{key}").ConfigureAwait(false);
                Interlocked.Add(ref _contentBytesSent, length);
                CheckEtag(bucket, key, etag, response.ETag);
            }
            finally
            {
                _slots.Release();
            }

            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // Reads until the end or until the buffer is full (one byte more than the size looked at: a file that grew shows).
    private static int ReadWhole(Microsoft.Win32.SafeHandles.SafeFileHandle handle, byte[] buffer)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var read = RandomAccess.Read(handle, buffer.AsSpan(total), total);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
    }

    private async Task PutFileAsync(string bucket, string key, string local, long size, string expectedEtag, CancellationToken cancellationToken)
    {
        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var response = await RunAsync(() => _s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = key, FilePath = local, UseChunkEncoding = false }, cancellationToken),
                $"upload {local} to s3://{bucket}/{key}").ConfigureAwait(false);
            Interlocked.Add(ref _contentBytesSent, size);
            CheckEtag(bucket, key, expectedEtag, response.ETag);
        }
        finally
        {
            _slots.Release();
        }
    }

    private async Task UploadMultipartAsync(string bucket, string key, string local, long size, string expectedEtag, Action<long> partDone,
        CancellationToken cancellationToken)
    {
        var start = await RunAsync(() => _s3.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest { BucketName = bucket, Key = key }, cancellationToken),
            $"start the upload of s3://{bucket}/{key}").ConfigureAwait(false);
        var partCount = (int)((size + PartSize - 1) / PartSize);
        var etags = new ConcurrentDictionary<int, string>();
        try
        {
            // About ten parts of one file in flight, as the SDKs do; the shared slots bound the whole transfer.
            await Parallel.ForEachAsync(Enumerable.Range(1, partCount),
                new ParallelOptions { MaxDegreeOfParallelism = Math.Min(10, _transfers), CancellationToken = cancellationToken },
                async (number, ct) =>
                {
                    var position = (number - 1) * PartSize;
                    var length = Math.Min(PartSize, size - position);
                    await _slots.WaitAsync(ct).ConfigureAwait(false);
                    try
                    {
                        var response = await RunAsync(() => _s3.UploadPartAsync(new UploadPartRequest
                        {
                            BucketName = bucket,
                            Key = key,
                            UploadId = start.UploadId,
                            PartNumber = number,
                            PartSize = length,
                            FilePath = local,
                            FilePosition = position,
                            UseChunkEncoding = false,
                        }, ct), $"upload part {number} of s3://{bucket}/{key}").ConfigureAwait(false);
                        etags[number] = response.ETag;
                    }
                    finally
                    {
                        _slots.Release();
                    }

                    Interlocked.Add(ref _contentBytesSent, length);
                    partDone(length);
                }).ConfigureAwait(false);
            var done = await RunAsync(() => _s3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
            {
                BucketName = bucket,
                Key = key,
                UploadId = start.UploadId,
                PartETags = [.. etags.OrderBy(p => p.Key).Select(p => new PartETag(p.Key, p.Value))],
            }, cancellationToken), $"complete the upload of s3://{bucket}/{key}").ConfigureAwait(false);
            CheckEtag(bucket, key, expectedEtag, done.ETag);
        }
        catch
        {
            try
            {
                await _s3.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = bucket, Key = key, UploadId = start.UploadId },
                    CancellationToken.None).ConfigureAwait(false);
            }
            catch (AmazonServiceException)
            {
                // The upload is abandoned either way; the storage expires it.
            }

            throw;
        }
    }

    private void CheckEtag(string bucket, string key, string expected, string? actual)
    {
        // The storage must have what was read: a silent corruption shows here as an ETag mismatch.
        var normalized = NormalizeEtag(actual);
        if (normalized.Length > 0 && !EtagMatches(expected, normalized))
        {
            throw new FarmPluginException($"Qarnot: the storage stored s3://{bucket}/{key} with ETag {normalized}, not {expected}: the upload was altered.", null, _pluginName);
        }
    }

    private async Task<T> RunAsync<T>(Func<Task<T>> action, string what)
    {
        try
        {
            return await action().ConfigureAwait(false);
        }
        catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.Forbidden || ex.ErrorCode is "InvalidAccessKeyId" or "SignatureDoesNotMatch" or "AccessDenied")
        {
            throw new FarmAuthenticationException(_redactor.Redact($"Qarnot: the storage refused the credentials (the account's email and the Qarnot token) to {what}: {ex.ErrorCode}."), null, _pluginName);
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode is "QuotaExceeded" or "TooManyBuckets")
        {
            throw new FarmQuotaException(_redactor.Redact($"Qarnot: a storage quota is reached ({what}): {ex.Message}"), null, _pluginName);
        }
        catch (AmazonServiceException ex) when (ex is not AmazonS3Exception || (int)ex.StatusCode >= 500 || ex.StatusCode == 0)
        {
            throw new FarmUnavailableException(_redactor.Redact($"Qarnot: the storage at {Endpoint} could not {what}: {ex.Message}"), null, _pluginName);
        }
        catch (HttpRequestException ex)
        {
            throw new FarmUnavailableException(_redactor.Redact($"Qarnot: the storage at {Endpoint} could not be reached to {what}: {ex.Message}"), null, _pluginName);
        }
        catch (AmazonS3Exception ex)
        {
            throw new FarmPluginException(_redactor.Redact($"Qarnot: the storage could not {what}: {ex.ErrorCode} {ex.Message}"), null, _pluginName);
        }
    }

    public void Dispose()
    {
        _s3.Dispose();
        _slots.Dispose();
    }

    /// <summary>ETags of local files by path, size and modification time, kept in the data directory.</summary>
    private sealed class EtagCache(string file)
    {
        private readonly ConcurrentDictionary<string, (long Size, long Ticks, string Etag)> _entries = new(StringComparer.Ordinal);
        private readonly SemaphoreSlim _loadGate = new(1);
        private bool _loaded;
        private int _dirty;

        // The file by its full path, as UploadAsync looked at it: its length and time are those of that one look.
        public async Task<string> GetAsync(FileInfo info, long partSize, CancellationToken cancellationToken)
        {
            await LoadAsync(cancellationToken).ConfigureAwait(false);
            if (TryGet(info, out var cached))
            {
                return cached;
            }

            var etag = await ComputeEtagAsync(info.FullName, partSize, cancellationToken).ConfigureAwait(false);
            Set(info, etag);
            return etag;
        }

        public bool TryGet(FileInfo info, out string etag)
        {
            etag = string.Empty;
            if (!_loaded || !_entries.TryGetValue(info.FullName, out var entry) || entry.Size != info.Length || entry.Ticks != info.LastWriteTimeUtc.Ticks)
            {
                return false;
            }

            etag = entry.Etag;
            return true;
        }

        public void Set(FileInfo info, string etag)
        {
            _entries[info.FullName] = (info.Length, info.LastWriteTimeUtc.Ticks, etag);
            Interlocked.Exchange(ref _dirty, 1);
        }

        public async Task SaveAsync(CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref _dirty, 0) == 0)
            {
                return;
            }

            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            var temporary = $"{file}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            var lines = _entries.Select(e => string.Join('\t', e.Key, e.Value.Size.ToString(CultureInfo.InvariantCulture),
                e.Value.Ticks.ToString(CultureInfo.InvariantCulture), e.Value.Etag));
            await File.WriteAllLinesAsync(temporary, lines, cancellationToken).ConfigureAwait(false);
            File.Move(temporary, file, overwrite: true);
        }

        public async Task LoadAsync(CancellationToken cancellationToken)
        {
            if (_loaded)
            {
                return;
            }

            await _loadGate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!_loaded && File.Exists(file))
                {
                    foreach (var line in await File.ReadAllLinesAsync(file, cancellationToken).ConfigureAwait(false))
                    {
                        var parts = line.Split('\t');
                        if (parts.Length == 4 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var size)
                            && long.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ticks))
                        {
                            _entries.TryAdd(parts[0], (size, ticks, parts[3]));
                        }
                    }
                }

                _loaded = true;
            }
            finally
            {
                _loadGate.Release();
            }
        }
    }
}
