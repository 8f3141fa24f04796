/* One of the tiny compile units of the build-probe test project. */
int unit12(int x);

int unit12(int x)
{
	int acc = 12;
	for (int k = 0; k < x; k++)
		acc = acc * 31 + k;
	return acc;
}
